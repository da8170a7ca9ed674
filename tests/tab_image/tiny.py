"""tab_image's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "tab_image.ingest.synthetic_rows": {"train": 60, "val": 20, "test": 40},
    "tab_image.ingest.image_size": 12,
    "tab_image.missing_masks.rates": [0.0, 0.5],
}
