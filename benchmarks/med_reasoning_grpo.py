"""GRPO steps per second and generated tokens per second for med_reasoning's model (CPU, or GPU when present).

Rerun: `.venv/bin/python benchmarks/med_reasoning_grpo.py <transformers model folder> [steps]`
(the folder `dvc repro med_reasoning-prepare_model` writes is data/med_reasoning/models/base).
Uses the smoke-scale GRPO settings from params.yaml (threads and precision included) and synthetic
letter-prompt questions. Prints generated tokens/s and prompt-plus-completion tokens/s: each
sequence holds 100-250 prompt tokens and 8 new ones, so the prompt is the cost.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from stages.med_reasoning import model as lm
from stages.med_reasoning import synthetic
from stages.med_reasoning.formats import format_prompt
from stages.med_reasoning.train import letter_reward, parsed


def main(folder: Path, steps: int) -> None:
    lm.offline()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    p = yaml.safe_load(Path("params.yaml").read_text())["med_reasoning"]["train"]
    torch.set_num_threads(p["num_threads"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = lm.use_bf16(p["precision"], device)
    questions = synthetic.generate_split("b", synthetic.IN_DOMAIN, 8, ["short", "long"], 5, (3, 6), np.random.default_rng(0))
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": format_prompt(q, "letter")}], "answer": q.answer,
                                  "letters": q.letters} for q in questions])
    batch = p["prompts_per_step"] * p["num_generations"]
    with tempfile.TemporaryDirectory() as scratch:
        config = GRPOConfig(output_dir=scratch, loss_type="grpo", beta=p["beta"], num_generations=p["num_generations"],
                            per_device_train_batch_size=batch, max_completion_length=p["max_completion_length"],
                            learning_rate=p["learning_rate"], max_steps=steps, logging_steps=1, report_to="none",
                            save_strategy="no", use_cpu=device == "cpu", bf16=bf16, gradient_checkpointing=False,
                            reward_weights=[1.0, 0.0], disable_tqdm=True)
        trainer = GRPOTrainer(model=str(folder), reward_funcs=[letter_reward, parsed], args=config, train_dataset=dataset,
                              processing_class=lm.load_tokenizer(folder))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    processed = max(h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h)
    print(f"{device} ({p['num_threads']} threads, bf16 {bf16}): {steps} GRPO steps of {batch} completions in {seconds:.1f} s: "
          f"{steps / seconds:.4f} steps/s, {sum(lengths) * batch / seconds:.2f} generated tokens/s, "
          f"{processed / seconds:.1f} prompt+completion tokens/s")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)
