"""med_reasoning-train@<variant>: GRPO from the base instruct model with the rule-based reward alone (no SFT).

TRL's ``GRPOTrainer`` with ``loss_type="grpo"`` and an explicit ``beta``: TRL 1.16 defaults to
``loss_type="dapo"`` and ``beta=0`` (no reference model, no KL), which is not plain GRPO. The
reward is 1 for the right option letter, else 0 (:mod:`stages.med_reasoning.reward`); a second,
zero-weight reward function only logs the parse rate. Variants (the paper's data questions):

- ``long`` / ``short``: informative vignettes vs bare questions (for real data: the ``subset``
  column, i.e. the source dataset, names the subsets to compare);
- ``easy`` / ``hard`` / ``mixed``: the difficulty bins, and half of each.

Every variant trains on the same number of questions (the smallest variant's size, ours), once
per seed. Per step: reward, KL, parse rate, completion length and the effective-query ratio
(share of prompts whose rollouts do not all get the same reward: 1 - TRL's
``frac_reward_zero_std``) go to MLflow and to ``metrics/train_<variant>.csv``.
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.med_reasoning import model as lm
from stages.med_reasoning.difficulty import manifest_questions
from stages.med_reasoning.formats import format_prompt
from stages.med_reasoning.reward import completion_text, extract_choice, reward
from stages.med_reasoning.variants import VARIANTS

LOGGED = {"reward": "reward", "kl": "kl", "rewards/parsed/mean": "parse_rate",
          "completions/mean_length": "completion_length", "frac_reward_zero_std": "frac_reward_zero_std"}


LOG_COLUMNS = ["seed", "step", "reward", "kl", "parse_rate", "completion_length", "effective_query_ratio"]


class TrainParams(StrictModel):
    variants: list[str] = Field(min_length=1)  # ours: the variants trained at this scale; the others are marked untrained
    seeds: list[int] = Field(min_length=1)     # each variant trains once per seed (the spread over seeds)
    max_steps: int = Field(ge=1)
    prompts_per_step: int = Field(ge=1)
    num_generations: int = Field(ge=2)         # the GRPO group size
    max_completion_length: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    beta: float = Field(ge=0)                  # KL weight, explicit (TRL's default 0.0 drops the reference)
    epsilon: float = Field(gt=0)               # PPO-style clip
    temperature: float = Field(gt=0)
    prompt_style: str = Field(pattern="^(letter|boxed)$")
    precision: str = Field(pattern="^(auto|bf16|fp32)$")   # ours: bf16 autocast where native (model.use_bf16)
    num_threads: int = Field(ge=1)


def variant_ids(manifest: pd.DataFrame, bins: pd.DataFrame, variant: str) -> list[str]:
    """Training question ids of a variant, all variants the same size (ours); ``mixed`` takes half from each bin."""
    train = manifest[manifest["split"] == "train"].merge(bins[["id", "bin"]], on="id", how="left")
    forms = sorted(train["subset"].unique())
    if variant in ("long", "short") and variant not in forms:
        raise BadInputError(f"train@{variant}: the training set has no '{variant}' subset (subsets: {forms})")
    pools = {"long": train[train["subset"] == "long"], "short": train[train["subset"] == "short"],
             "easy": train[train["bin"] == "easy"], "hard": train[train["bin"] == "hard"]}
    size = min(len(pool) for name, pool in pools.items() if name in ("easy", "hard") or name in forms)
    if variant == "mixed":
        half = size // 2
        ids = list(pools["easy"]["id"][:half]) + list(pools["hard"]["id"][: size - half])
    else:
        ids = list(pools[variant]["id"][:size])
    return sorted(ids)


def effective_query_ratio(frac_reward_zero_std: float) -> float:
    return 1.0 - frac_reward_zero_std


def letter_reward(completions, answer, letters, **_) -> list[float]:
    """TRL reward function: dataset columns arrive as keyword lists."""
    return [reward([c], [a], o)[0] for c, a, o in zip(completions, answer, letters)]


def parsed(completions, letters, **_) -> list[float]:
    """Zero-weight reward function: 1 when an option letter can be read (the parse rate)."""
    return [float(extract_choice(completion_text(c), o) is not None) for c, o in zip(completions, letters)]


def grpo_run(ctx: StageContext[TrainParams], questions, seed: int, output) -> tuple[object, pd.DataFrame, dict]:
    """One GRPO run; returns the trainer, its per-step log and its speed."""
    lm.offline()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    p = ctx.params
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": format_prompt(q, p.prompt_style)}],
                                  "answer": q.answer, "letters": q.letters} for q in questions])
    config = GRPOConfig(
        output_dir=str(ctx.scratch(f"grpo_seed{seed}")), loss_type="grpo", beta=p.beta, epsilon=p.epsilon,
        num_generations=p.num_generations, per_device_train_batch_size=p.prompts_per_step * p.num_generations,
        max_completion_length=p.max_completion_length, temperature=p.temperature, learning_rate=p.learning_rate,
        max_steps=p.max_steps, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, report_to="none",
        save_strategy="no", seed=seed, data_seed=seed, use_cpu=output.type == "cpu", bf16=lm.use_bf16(p.precision, output.type), fp16=False,
        dataloader_num_workers=0, disable_tqdm=True, reward_weights=[1.0, 0.0],
        gradient_checkpointing=False,  # ours: small models on CPU; memory is not the limit
    )
    tokenizer = lm.load_tokenizer(ctx.dep("models/base"))
    # The folder path (not a model object): with beta > 0 TRL rebuilds the reference from it (study note).
    trainer = GRPOTrainer(model=str(ctx.dep("models/base")), reward_funcs=[letter_reward, parsed], args=config,
                          train_dataset=dataset, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    rows = [{"step": int(h["step"]), **{name: float(h[key]) for key, name in LOGGED.items() if key in h}}
            for h in trainer.state.log_history if "reward" in h]
    log = pd.DataFrame(rows)
    log["effective_query_ratio"] = effective_query_ratio(log["frac_reward_zero_std"])
    tokens = float(log["completion_length"].sum() * p.prompts_per_step * p.num_generations)
    # The cost is the prompt: each of the batch's sequences holds 100-250 prompt tokens and a few new ones.
    processed = max((float(h["num_tokens"]) for h in trainer.state.log_history if "num_tokens" in h), default=0.0)
    speed = {"grpo_steps_per_second": p.max_steps / seconds, "generated_tokens_per_second": tokens / seconds,
             "prompt_and_completion_tokens_per_second": processed / seconds}
    return trainer, log, speed


def not_trained(ctx: StageContext[TrainParams], variant: str) -> Metrics:
    """A variant left out of ``train.variants``: no model, an empty log, and the reason (evaluate reports its claims as not tested)."""
    reason = f"not trained at {ctx.common.scale} scale: train.variants is {ctx.params.variants}"
    with atomic_directory(ctx.out(f"models/rl/{variant}")) as staging:
        write_json(staging / "not_trained.json", {"variant": variant, "reason": reason})
    write_table(ctx.out(f"metrics/train_{variant}.csv"), pd.DataFrame(columns=LOG_COLUMNS))
    write_json(ctx.out(f"metrics/train_{variant}.json"), {"variant": variant, "trained": False, "reason": reason})
    return {"trained": 0.0}


def train(ctx: StageContext[TrainParams]) -> Metrics:
    p = ctx.params
    variant = ctx.item
    if variant not in VARIANTS or any(v not in VARIANTS for v in p.variants):
        raise BadInputError(f"train@{variant}: unknown variant in {[variant, *p.variants]}; known: {list(VARIANTS)}")
    if variant not in p.variants:
        return not_trained(ctx, variant)
    device = ctx.torch_device(p.num_threads)
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), keep_default_na=False)
    bins = read_table(ctx.dep("interim/difficulty/difficulty.csv"), keep_default_na=False)
    ids = set(variant_ids(manifest, bins, variant))
    questions = manifest_questions(manifest[manifest["id"].isin(ids)].sort_values("id"))
    logs, speeds = [], []
    with atomic_directory(ctx.out(f"models/rl/{variant}")) as staging:
        for seed in p.seeds:
            trainer, log, speed = grpo_run(ctx, questions, seed, device)
            trainer.model.save_pretrained(staging / f"seed{seed}")
            trainer.processing_class.save_pretrained(staging / f"seed{seed}")
            shutil.rmtree(ctx.scratch(f"grpo_seed{seed}"), ignore_errors=True)
            for row in log.to_dict("records"):
                ctx.log_metrics({f"seed{seed}.{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))
            logs.append(log.assign(seed=seed))
            speeds.append(speed)
    table = pd.concat(logs, ignore_index=True)[LOG_COLUMNS]
    write_table(ctx.out(f"metrics/train_{variant}.csv"), table)
    final = table.groupby("seed").tail(1)
    summary = {"variant": variant, "trained": True, "questions": len(questions), "seeds": p.seeds, "steps": p.max_steps,
               "loss_type": "grpo", "beta": p.beta, "bf16": lm.use_bf16(p.precision, device.type), "final_reward_mean": float(final["reward"].mean()),
               "first_reward_mean": float(table.groupby("seed").head(1)["reward"].mean()),
               "final_effective_query_ratio": float(final["effective_query_ratio"].mean()),
               "final_parse_rate": float(final["parse_rate"].mean())}
    write_json(ctx.out(f"metrics/train_{variant}.json"), summary)
    shutil.rmtree(ctx.scratch(""), ignore_errors=True)
    return {"trained": 1.0, **{k: v for k, v in summary.items() if isinstance(v, float)},
            **{k: float(np.mean([s[k] for s in speeds])) for k in speeds[0]}}


if __name__ == "__main__":
    run_stage(train)
