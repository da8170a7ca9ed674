"""tab_image's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "tab_image.ingest.synthetic_rows": {"train": 60, "val": 20, "test": 40},
    "tab_image.ingest.image_size": 12,
    "tab_image.missing_masks.rates": [0.0, 0.5],
}
TINY.update({
    "tab_image.pretrain.epochs": 2,
    "tab_image.pretrain.warmup_epochs": 1,
    "tab_image.pretrain.batch_size": 16,
    "tab_image.pretrain.network.cnn_width": 8,
    "tab_image.pretrain.network.dim": 16,
    "tab_image.pretrain.network.depth": 1,
    "tab_image.pretrain.network.interaction_depth": 1,
    "tab_image.pretrain.network.heads": 2,
})
TINY.update({
    "tab_image.evaluate.reconstruction_rate": 0.5,
    "tab_image.evaluate.finetune_epochs": 2,
    "tab_image.evaluate.probe_epochs": 10,
    "tab_image.evaluate.label_fractions": [0.1, 1.0],
})
