"""ecg_text's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "ecg_text.ingest.pretrain_records": 24,
    "ecg_text.ingest.downstream_records": 24,
    "ecg_text.ingest.test_fraction": 0.5,
    "ecg_text.ingest.condition_probability": 0.4,
    "ecg_text.pretrain.epochs": 1,
    "ecg_text.pretrain.batch_size": 12,
    "ecg_text.pretrain.encoder.depth": 1,
    "ecg_text.pretrain.encoder.width": 16,
    "ecg_text.pretrain.encoder.mlp_width": 16,
    "ecg_text.evaluate.probe_epochs": 2,
    "ecg_text.evaluate.bootstrap_samples": 10,
    "ecg_text.evaluate.random_k": [3],
}
