"""med_reasoning's tiny params: its step tests and its row of tests/pipeline_rows.py use them."""

TINY = {
    "med_reasoning.ingest.train_per_form": 4,
    "med_reasoning.ingest.test_per_form": 3,
    "med_reasoning.ingest.ood_per_set": 3,
}
