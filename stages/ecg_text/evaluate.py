"""ecg_text-evaluate: zero-shot (12 leads and partial leads), linear probes at 1/10/100%, bootstrap intervals, claims.

Zero-shot follows MERL's zeroshot_val.py: each class's CKEPE prompt goes through the text encoder
(cached MiniLM + the trained projection), each ECG's normalised embedding is scored by cosine with
every prompt, macro ROC-AUC and max-F1 on the test split. With fewer leads K-MERL's encoder masks
the absent leads; MERL's gets them zero-filled, as its code would.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.claims import Claim, write_claims
from stages.common.io import read_table, write_table, write_tables
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ecg_text import downstream as ds
from stages.ecg_text.masking import leads_mask, random_k_masks
from stages.ecg_text.models import VARIANTS, EcgTextModel, EncoderParams
from stages.ecg_text.text import encode_texts, load_text_encoder

FULL = "all_12"


class EvaluateParams(StrictModel):
    lead_settings: dict[str, list[str]]
    random_k: list[int]
    label_fractions: list[float] = Field(min_length=1)
    probe_epochs: int = Field(ge=1)
    probe_batch_size: int = Field(ge=1)
    probe_learning_rate: float = Field(gt=0)
    probe_milestone: int = Field(ge=1)
    probe_gamma: float = Field(gt=0, le=1)
    probe_schedule_step: str
    bootstrap_samples: int = Field(ge=10)
    robustness_ratio: float = Field(gt=0, le=1)
    class_prompts: dict[str, str]
    num_threads: int = Field(ge=1)

    @field_validator("lead_settings")
    @classmethod
    def lead_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if FULL not in value or len(value[FULL]) != 12:
            raise ValueError(f"must include {FULL} with the 12 leads")
        for name, leads in value.items():
            try:
                leads_mask(leads)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from error
        return value

    @field_validator("probe_schedule_step")
    @classmethod
    def step_kind(cls, value: str) -> str:
        if value not in ("epoch", "batch"):
            raise ValueError("must be 'epoch' or 'batch'")
        return value


def load_models(ctx: StageContext) -> dict[str, EcgTextModel]:
    config = json.loads(ctx.dep("models/config.json").read_text())
    encoder = EncoderParams.model_validate(config["encoder"])
    models = {}
    for name in config["variants"]:
        model = EcgTextModel(VARIANTS[name], encoder, config["samples"], config["text_dim"], len(config["entities"]))
        model.load_state_dict(torch.load(ctx.dep(f"models/{name}.pt"), weights_only=True))
        models[name] = model.eval()
    return models


def lead_masks(p: EvaluateParams, count: int, seed: int) -> dict[str, np.ndarray]:
    masks = {name: np.repeat(leads_mask(leads)[None], count, axis=0) for name, leads in p.lead_settings.items()}
    masks.update({f"random_{k}": random_k_masks(count, k, seed + k) for k in p.random_k})
    return masks


@torch.no_grad()
def embed(model: EcgTextModel, signals: torch.Tensor, present: np.ndarray, batch: int = 256) -> tuple[torch.Tensor, np.ndarray]:
    """(normalised projected embeddings, encoder features) under the given lead masks."""
    embeddings, features = [], []
    mask = torch.from_numpy(present)
    for start in range(0, signals.shape[0], batch):
        x, m = signals[start:start + batch], mask[start:start + batch]
        feature = model.features(x, m)
        features.append(feature.numpy())
        embeddings.append(torch.nn.functional.normalize(model.ecg_projection(feature), dim=-1))
    return torch.cat(embeddings), np.concatenate(features)


def set_classes(records: pd.DataFrame, dataset: str, prompts: dict[str, str]) -> list[str]:
    codes = sorted({c for text in records.loc[records.dataset == dataset, "codes"] for c in str(text).split(";") if c})
    missing = [c for c in codes if c not in prompts]
    if missing:
        raise BadInputError(f"ecg_text.evaluate.class_prompts: no prompt for code(s) {missing} of data set {dataset}")
    return codes


def evaluate(ctx: StageContext[EvaluateParams]) -> Metrics:
    p = ctx.params
    ctx.torch_device(p.num_threads)
    seed = ctx.common.seed
    records = read_table(ctx.dep("interim/preprocessed/records.csv"), keep_default_na=False)
    arrays = np.load(ctx.dep("interim/preprocessed/ecgs.npz"))
    signals = torch.from_numpy(arrays["signals"].astype(np.float32))
    models = load_models(ctx)
    datasets = sorted(set(records.loc[records.role == "downstream", "dataset"]))
    encoder = load_text_encoder("cpu")
    zero_shot, probes = [], []
    for dataset in datasets:
        classes = set_classes(records, dataset, p.class_prompts)
        prompt_text = torch.from_numpy(encode_texts(encoder, [p.class_prompts[c].lower() for c in classes], 32))
        test = np.flatnonzero(((records.dataset == dataset) & (records.split == "test")).to_numpy())
        train = np.flatnonzero(((records.dataset == dataset) & (records.split == "train")).to_numpy())
        test_labels = ds.label_matrix(list(records.codes.iloc[test]), classes)
        train_labels = ds.label_matrix(list(records.codes.iloc[train]), classes)
        for name, model in models.items():
            with torch.no_grad():
                prompts = model.embed_text(prompt_text)
            for setting, present in lead_masks(p, len(test), seed).items():
                embeddings, features = embed(model, signals[test], present)
                scores = ds.zero_shot_scores(embeddings, prompts)
                row = {"model": name, "dataset": dataset, "leads": setting, "n_leads": int(present[0].sum()),
                       "auc": ds.macro_auc(test_labels, scores), "max_f1": ds.max_f1(test_labels, scores),
                       "classes_evaluated": int(ds.evaluable(test_labels).sum()), "test_records": len(test)}
                if setting == FULL:
                    row["auc_low"], row["auc_high"] = ds.bootstrap_macro_auc(test_labels, scores, p.bootstrap_samples, seed)
                    test_features = features
                zero_shot.append(row)
            _, train_features = embed(model, signals[train], np.ones((len(train), 12), dtype=bool))
            for fraction in p.label_fractions:
                chosen = ds.probe_subset(len(train), fraction)
                head = ds.train_linear_probe(train_features[chosen], train_labels[chosen], p.probe_epochs, p.probe_batch_size,
                                             p.probe_learning_rate, p.probe_milestone, p.probe_gamma, p.probe_schedule_step, seed)
                with torch.no_grad():
                    probe_scores = head(torch.from_numpy(test_features)).numpy()
                probes.append({"model": name, "dataset": dataset, "fraction": fraction, "train_records": len(chosen),
                               "auc": ds.macro_auc(test_labels, probe_scores)})
    zero_table, probe_table = pd.DataFrame(zero_shot), pd.DataFrame(probes)
    summary = summarise(zero_table, probe_table, p)
    with atomic_directory(ctx.out("evaluation")) as staging:
        write_tables(staging, {"zero_shot.csv": zero_table.round(6), "linear_probe.csv": probe_table.round(6)})
    by_leads = (zero_table.groupby(["model", "n_leads", "leads"]).auc.mean().reset_index()
                .pivot_table(index=["n_leads", "leads"], columns="model", values="auc").reset_index()
                .rename(columns={"n_leads": "leads", "leads": "setting"}).sort_values(["leads", "setting"]))
    write_table(ctx.out("plots/auc_vs_leads.csv"), by_leads.round(6))
    write_json(ctx.out("metrics/evaluate.json"), summary)
    write_claims(ctx, claims(summary, p))
    return {f"zero_shot_auc.{m}": v for m, v in summary["zero_shot_auc_12"].items()}


def summarise(zero: pd.DataFrame, probe: pd.DataFrame, p: EvaluateParams) -> dict:
    full = zero[zero.leads == FULL]
    partial = zero[zero.leads != FULL]
    mean_full = full.groupby("model").auc.mean()
    mean_partial = partial.groupby("model").auc.mean()
    return {
        "datasets": sorted(full.dataset.unique()),
        "zero_shot_auc_12": mean_full.round(6).to_dict(),
        "zero_shot_auc_12_by_set": {m: g.set_index("dataset").auc.round(6).to_dict() for m, g in full.groupby("model")},
        "zero_shot_auc_12_interval": {m: {r.dataset: [round(r.auc_low, 6), round(r.auc_high, 6)] for r in g.itertuples()}
                                      for m, g in full.groupby("model")},
        "zero_shot_auc_partial": mean_partial.round(6).to_dict(),
        "zero_shot_auc_by_setting": {m: g.groupby("leads").auc.mean().round(6).to_dict() for m, g in zero.groupby("model")},
        "partial_lead_drop": (mean_full - mean_partial).round(6).to_dict(),
        "zero_shot_auc_all_settings": zero.groupby("model").auc.mean().round(6).to_dict(),
        "linear_probe_auc": {m: g.groupby("fraction").auc.mean().round(6).rename(lambda f: f"{f:g}").to_dict()
                             for m, g in probe.groupby("model")},
        "robustness_ratio": p.robustness_ratio,
    }


def claims(s: dict, p: EvaluateParams) -> list[Claim]:
    full, drop, probe = s["zero_shot_auc_12"], s["partial_lead_drop"], s["linear_probe_auc"]
    found = []
    if {"merl", "kmerl"} <= set(full):
        found.append(Claim(
            id="zero_shot_kmerl_at_least_merl", source="K-MERL abstract; MERL Table 1 (zero-shot)",
            claim="With 12 leads, K-MERL's zero-shot macro AUC is at least MERL's, averaged over the downstream sets.",
            measured={"kmerl": full["kmerl"], "merl": full["merl"], "sets": len(s["datasets"]),
                      **{f"kmerl_{d}": v for d, v in s["zero_shot_auc_12_by_set"]["kmerl"].items()},
                      **{f"merl_{d}": v for d, v in s["zero_shot_auc_12_by_set"]["merl"].items()}},
            intervals={f"{m}_{d}": tuple(v) for m in ("kmerl", "merl") for d, v in s["zero_shot_auc_12_interval"][m].items()},
            comparison="mean macro AUC kmerl >= merl over >= 3 sets", holds=len(s["datasets"]) >= 3 and full["kmerl"] >= full["merl"]))
        fractions = sorted(probe["kmerl"])
        found.append(Claim(
            id="linear_probe_kmerl_at_least_merl", source="K-MERL abstract (best linear-probe results); MERL Table 2",
            claim="Linear probes on frozen K-MERL features reach at least MERL's macro AUC at 1%, 10% and 100% of the labels.",
            measured={**{f"kmerl_{f}": probe["kmerl"][f] for f in fractions}, **{f"merl_{f}": probe["merl"][f] for f in fractions}},
            comparison="kmerl >= merl at every label fraction (mean over sets)",
            holds=all(probe["kmerl"][f] >= probe["merl"][f] for f in fractions)))
        merl_drop, kmerl_drop = drop["merl"], drop["kmerl"]
        found.append(Claim(
            id="partial_leads_kmerl_loses_less", source="K-MERL abstract (partial-lead zero-shot, +16% AUC on average)",
            claim="With fewer leads, K-MERL loses far less zero-shot AUC than the 12-lead-only MERL baseline.",
            measured={"kmerl_drop": kmerl_drop, "merl_drop": merl_drop, "kmerl_partial_auc": s["zero_shot_auc_partial"]["kmerl"],
                      "merl_partial_auc": s["zero_shot_auc_partial"]["merl"]},
            comparison=f"kmerl drop (12 leads minus mean over partial settings) <= {p.robustness_ratio} x merl drop, and merl drop > 0",
            holds=merl_drop > 0 and kmerl_drop <= p.robustness_ratio * merl_drop))
    every = s["zero_shot_auc_all_settings"]
    if {"kmerl", "kmerl_no_entity"} <= set(every):
        found.append(Claim(
            id="ablation_entity_loss", source="K-MERL summaries (dual loss with entity supervision)",
            claim="Without the entity loss, K-MERL's zero-shot AUC (mean over sets and lead settings) is lower.",
            measured={"kmerl": every["kmerl"], "kmerl_no_entity": every["kmerl_no_entity"]},
            comparison="kmerl_no_entity < kmerl", holds=every["kmerl_no_entity"] < every["kmerl"]))
    if {"kmerl", "kmerl_no_lead_mask"} <= set(every):
        partial = s["zero_shot_auc_partial"]
        found.append(Claim(
            id="ablation_lead_masking", source="K-MERL abstract (dynamic lead masking)",
            claim="Without dynamic lead masking, K-MERL's partial-lead zero-shot AUC is lower.",
            measured={"kmerl": partial["kmerl"], "kmerl_no_lead_mask": partial["kmerl_no_lead_mask"]},
            comparison="kmerl_no_lead_mask < kmerl (mean over partial settings and sets)",
            holds=partial["kmerl_no_lead_mask"] < partial["kmerl"]))
    return found


if __name__ == "__main__":
    run_stage(evaluate)
