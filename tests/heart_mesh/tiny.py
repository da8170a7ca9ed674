"""heart_mesh's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "heart_mesh.ingest.train_subjects": 8,
    "heart_mesh.ingest.val_subjects": 10,
    "heart_mesh.ingest.disease_fraction": 0.4,
    "heart_mesh.ingest.frames": 4,
    "heart_mesh.ingest.subdivisions": 1,
    "heart_mesh.train.network.z_dim": 16,
    "heart_mesh.train.network.ff_size": 32,
    "heart_mesh.train.network.num_layers": 1,
    "heart_mesh.train.epochs": 2,
    "heart_mesh.train.validate_every": 1,
    "heart_mesh.baselines.vae_epochs": 2,
    "heart_mesh.baselines.latent_per_frame": 3,
    "heart_mesh.evaluate.generation_samples": 2,
    "heart_mesh.evaluate.delta_samples": 3,
    "heart_mesh.evaluate.cv_folds": 2,
    "heart_mesh.report.render_subjects": 1,
}
