"""med_reasoning's tiny params: its step tests and its row of tests/pipeline_rows.py use them.

The model is the real tokenizer with tiny random weights (it never earns reward; the study
note checked that): these params test the plumbing, the smoke run tests the claims.
"""

TINY = {
    "med_reasoning.ingest.train_per_form": 4,
    "med_reasoning.ingest.test_per_form": 3,
    "med_reasoning.ingest.ood_per_set": 3,
    "med_reasoning.prepare_model.random_init": {"hidden_size": 16, "layers": 1, "heads": 2},
    "med_reasoning.difficulty.samples": 2,
    "med_reasoning.difficulty.max_new_tokens": 3,
    "med_reasoning.train.variants": ["long", "short", "easy", "mixed"],  # hard left untrained: the not-tested path
    "med_reasoning.train.seeds": [0],
    "med_reasoning.train.max_steps": 2,
    "med_reasoning.train.prompts_per_step": 1,
    "med_reasoning.train.max_completion_length": 3,
    "med_reasoning.train.num_generations": 2,
    "med_reasoning.evaluate.max_new_tokens": 3,
    "med_reasoning.evaluate.bootstrap_resamples": 200,
}
