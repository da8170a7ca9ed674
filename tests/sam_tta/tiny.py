"""sam_tta's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "sam_tta.ingest.cases": {"source": 12, "target": 3, "medical": 4},
    "sam_tta.pretrain.steps": 6,
    "sam_tta.pretrain.batch_size": 2,
    "sam_tta.pretrain.checkpoint_every": 3,
    "sam_tta.pretrain.network.encoder_dim": 16,
    "sam_tta.pretrain.network.encoder_depth": 1,
    "sam_tta.pretrain.network.prompt_dim": 16,
    "sam_tta.pretrain.network.decoder_depth": 1,
    "sam_tta.finetune_medical.steps": 2,
    "sam_tta.finetune_medical.batch_size": 2,
    "sam_tta.adapt.groups": {"main": ["source_only", "sbct_only", "sam_tta"], "baselines": ["mean_teacher", "tent", "medsam"],
                             "ablations": ["no_icm", "cnn_curves"]},
    "sam_tta.adapt.prompts": ["box", "point"],
    "sam_tta.evaluate.bootstrap_resamples": 20,
}
