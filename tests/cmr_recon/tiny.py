"""cmr_recon's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "cmr_recon.evaluate.sense_iterations": 5,
    "cmr_recon.ingest.subjects": 3,
    "cmr_recon.ingest.validation_subjects": 1,
    "cmr_recon.ingest.modalities": ["cine_sax", "T1map", "blackblood"],
    "cmr_recon.ingest.held_out_modalities": ["blackblood"],
    "cmr_recon.ingest.frames": 3,
    "cmr_recon.ingest.coils": 4,
    "cmr_recon.ingest.slices": 1,
    "cmr_recon.ingest.matrix_sizes": [[40, 32], [48, 32]],
    "cmr_recon.undersample.patterns": {"Uniform": [4], "ktRadial": [8]},
    "cmr_recon.train.network.num_cascades": 1,
    "cmr_recon.train.network.chans": 4,
    "cmr_recon.train.epochs": 2,
    "cmr_recon.train.steps_per_epoch": 3,
}
