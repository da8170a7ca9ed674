"""grounding's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "grounding.ingest.synthetic.images_per_split": {"train": 8, "validate": 2, "test": 8},
    "grounding.train.epochs": 2,
    "grounding.train.network.width": 16,
    "grounding.train.network.max_answer_tokens": 12,
    "grounding.evaluate.bootstrap_resamples": 10,
    "grounding.evaluate.chance_seeds": 1,
    "grounding.evaluate.max_new_tokens": 12,
}
