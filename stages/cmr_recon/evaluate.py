"""cmr_recon-evaluate: zero-filled, SENSE (ESPIRiT maps) and the learned model on the held-out subjects.

Scored with the official CMRxRecon2024 metrics on the validation protocol (central slices,
first frames, centre crop) and the uncropped test protocol, and with fastMRI's metrics under
their own name. Aggregation: per file, per (modality, pattern) cell, overall (this project's
view, labelled so), and the official Task 1 / Task 2 scores from the cells of ``Val_Score2024.py``.

SENSE's Tikhonov weight is chosen per (pattern, acceleration) on training subjects (ours): the
grid value with the best official PSNR there is used on the validation subjects and reported.
"""
from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from stages.cmr_recon.classical import (
    calibration_block,
    espirit_maps,
    sense_magnitude,
    sense_recon,
    time_averaged_kspace,
    zero_filled,
)
from stages.cmr_recon.dataset import file_seed, load_manifest, manifest_file, with_time_axis
from stages.cmr_recon.export import export_setting
from stages.cmr_recon.io import read_kspace, read_mask
from stages.cmr_recon.learned import build_inputs, condition_indices, load_model, reconstruct
from stages.cmr_recon.masks import acs_from_mask, make_mask
from stages.cmr_recon.metrics import (
    METHODS,
    aggregate,
    fastmri_metrics,
    official_metrics,
    official_task_scores,
    validation_crop,
    validation_indices,
)
from stages.cmr_recon.transforms import ifft2c, rss
from stages.common.atomic import atomic_directory, write_json
from stages.common.claims import Claim, write_claims
from stages.common.io import read_table, write_npz, write_table, write_tables
from stages.common.params import StrictModel
from stages.common.paths import resolve_inside
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage

PROTOCOLS = {"validation": validation_crop, "test": lambda images: images}


VIEW_LABELS = {
    "validation": "this project's view: mean over (modality, pattern) cells, validation protocol (crop); not the official score",
    "test": "this project's view: mean over (modality, pattern) cells, uncropped; not the official score",
    "fastmri": "fastMRI's volume metrics (data_range = target max), not the challenge's definition",
    "official_task1": "Val_Score2024.py Task 1: modality groups x Uniform4/8/10, rounded to 4 decimals",
    "official_task2": "Val_Score2024.py Task 2: modality groups (no Flow2d/BlackBlood) x ktUniform/ktGaussian/ktRadial",
}


class EvaluateParams(StrictModel):
    sense_iterations: int = Field(ge=1)
    sense_regularisation_grid: list[float] = Field(min_length=1)  # ours: Tikhonov weights tried on training subjects
    sense_tuning_files: int = Field(ge=1)                         # ours: training files the weight is chosen on
    batch_size: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def score(target: np.ndarray, images: np.ndarray, blackblood: bool) -> dict[str, dict[str, np.ndarray]]:
    """Official per-image metrics under both protocols, and fastMRI's volume metrics."""
    scores = {name: official_metrics(crop(target), crop(images), blackblood=blackblood) for name, crop in PROTOCOLS.items()}
    scores["fastmri"] = {k: np.array([v]) for k, v in fastmri_metrics(target, images).items()}
    return scores


def tuning_files(manifest: pd.DataFrame, count: int) -> pd.DataFrame:
    """``count`` training files, one modality after another (first subject of each, then the next)."""
    train = manifest[manifest["split"] == "train"].sort_values(["subject_key", "modality"])
    order = train.assign(rank=train.groupby("modality").cumcount()).sort_values(["rank", "modality"])
    return order.head(count)


def best_weight(psnr_by_weight: dict[float, float]) -> float:
    """The weight with the highest mean PSNR (the smallest such weight on a tie)."""
    return max(sorted(psnr_by_weight), key=lambda w: (psnr_by_weight[w], -w))


def tune_sense_weights(files: pd.DataFrame, dataset_root: Path, settings: pd.DataFrame, params: EvaluateParams,
                       seed: int) -> tuple[dict[str, float], pd.DataFrame]:
    """Per (pattern, acceleration): the grid weight with the best official PSNR on training files.

    Each training file contributes its first scored slice and frame, undersampled with a fresh
    mask of that setting (its own seed); maps from its ACS as in evaluation.
    """
    rows = []
    for case in files.itertuples():
        full = with_time_axis(read_kspace(manifest_file(dataset_root, case.path)))
        nt, nz, _, ny, nx = full.shape
        slices, frames = validation_indices(nz, nt, case.modality)
        z, t = slices[0], frames[0]
        target = rss(ifft2c(full[t, z]), coil_axis=0)[None]
        for (pattern, acceleration, acs), _ in settings.groupby(["pattern", "acceleration", "acs"]):
            mask = make_mask(pattern, nx, ny, nt, int(acceleration), acs=int(acs),
                             seed=file_seed(seed, "sense-tuning", case.subject_key, case.modality, pattern, acceleration))
            kus = full[:, z] * mask[:, None]  # (nt, nc, ny, nx) of slice z
            maps = espirit_maps(time_averaged_kspace(kus, mask))
            for weight in params.sense_regularisation_grid:
                image = sense_magnitude(sense_recon(kus[t], mask[t], maps, max_iter=params.sense_iterations, lamda=weight), maps)
                psnr = official_metrics(validation_crop(target), validation_crop(image[None]), blackblood=case.modality == "blackblood")["psnr"][0]
                rows.append({"pattern": pattern, "acceleration": int(acceleration), "weight": weight,
                             "file": f"{case.subject_key}/{case.modality}", "psnr": float(psnr)})
    table = pd.DataFrame(rows)
    chosen = {}
    for (pattern, acceleration), group in table.groupby(["pattern", "acceleration"]):
        chosen[f"{pattern}{acceleration}"] = best_weight(group.groupby("weight")["psnr"].mean().to_dict())
    return chosen, table


def reconstruct_all(full, kus, mask, pairs, pattern, acceleration, modality, model, device, params, maps_cache,
                    sense_weight):
    """Target and the three reconstructions of the chosen (slice, frame) pairs, each ``(N, ny, nx)``."""
    ny, nx = full.shape[-2:]
    seconds = {}
    target = np.stack([rss(ifft2c(full[t, z]), coil_axis=0) for z, t in pairs])
    started = time.perf_counter()
    images = {"zero_filled": np.stack([zero_filled(kus[t, z]) for z, t in pairs])}
    seconds["zero_filled"] = time.perf_counter() - started
    started = time.perf_counter()
    sense = []
    for z, t in pairs:
        averaged = time_averaged_kspace(kus[:, z], mask)
        # ESPIRiT reads only the central 16 x 16 block: maps are shared by every setting whose block is equal.
        key = (z, hashlib.sha1(np.ascontiguousarray(calibration_block(averaged)).tobytes()).hexdigest())
        if key not in maps_cache:
            maps_cache[key] = espirit_maps(averaged)
        maps = maps_cache[key]
        frame_mask = mask[t % mask.shape[0]]
        image = sense_recon(kus[t, z], frame_mask, maps, max_iter=params.sense_iterations, lamda=sense_weight)
        sense.append(sense_magnitude(image, maps))
    images["sense"] = np.stack(sense)
    seconds["sense"] = time.perf_counter() - started
    started = time.perf_counter()
    inputs = build_inputs(kus, mask, acs_from_mask(mask), pairs, (model.num_frames - 1) // 2,
                          condition_indices(modality, pattern, acceleration))
    images["learned"] = reconstruct(model, inputs, device, params.batch_size)
    seconds["learned"] = time.perf_counter() - started
    return target, images, seconds


def pattern_curves(per_setting: pd.DataFrame, metric: str) -> dict[str, pd.DataFrame]:
    """For DVC plots: per pattern, ``acceleration`` against each method's mean metric."""
    curves = {}
    for pattern, rows in per_setting.groupby("pattern"):
        table = rows.pivot_table(index="acceleration", columns="method", values=metric).reset_index()
        curves[pattern] = table[["acceleration", *[m for m in METHODS if m in table.columns]]]
    return curves


def evaluate(ctx: StageContext[EvaluateParams]) -> Metrics:
    device = ctx.torch_device(ctx.params.num_threads)
    manifest, dataset_root = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    undersampled_root = ctx.dep("interim/undersampled")
    settings = read_table(undersampled_root / "undersampled.csv",
                          ("subject_key", "subject", "modality", "pattern", "acceleration", "effective_acceleration",
                           "kus_path", "mask_path", "full_path", "acs"))
    model = load_model(ctx.dep("models"), device)
    started = time.perf_counter()
    sense_weights, tuning = tune_sense_weights(tuning_files(manifest, ctx.params.sense_tuning_files), dataset_root,
                                               settings, ctx.params, ctx.common.seed)
    print("SENSE Tikhonov weight per setting, chosen on training files:", sense_weights)
    rows, examples, timing, exports = [], {}, defaultdict(float), []
    timing["sense_tuning"] = time.perf_counter() - started
    groups = list(settings.groupby(["subject_key", "modality"], sort=True))
    for (subject_key, modality), file_settings in progress(groups, "evaluating files", len(groups)):
        full = with_time_axis(read_kspace(manifest_file(dataset_root, file_settings["full_path"].iloc[0])))
        nt, nz = full.shape[:2]
        slices, frames = validation_indices(nz, nt, modality)
        pairs = [(z, t) for t in frames for z in slices]
        blackblood = modality == "blackblood"
        held_out = bool(manifest.loc[(manifest.subject_key == subject_key) & (manifest.modality == modality), "held_out"].iloc[0])
        maps_cache: dict[int, np.ndarray] = {}
        for setting in file_settings.itertuples():
            kus_file = resolve_inside(undersampled_root, setting.kus_path, "kus path")
            kus = with_time_axis(read_kspace(kus_file, key="kus"))
            mask = read_mask(resolve_inside(undersampled_root, setting.mask_path, "mask path"), kus.shape)
            target, images, seconds = reconstruct_all(full, kus, mask, pairs, setting.pattern, int(setting.acceleration),
                                                      modality, model, device, ctx.params, maps_cache,
                                                      sense_weights[f"{setting.pattern}{int(setting.acceleration)}"])
            for method, value in seconds.items():
                timing[method] += value
            exports.append((modality, subject_key, Path(setting.kus_path).name, len(frames), len(slices), target, images))
            key = (setting.pattern, int(setting.acceleration))
            if key not in examples or modality == "cine_sax":
                examples[key] = {"target": target[0], "mask": mask[0], "modality": modality, "subject": subject_key,
                                 **{m: images[m][0] for m in METHODS}}
            for method in METHODS:
                for protocol, values in score(target, images[method], blackblood).items():
                    for index in range(len(values["psnr"])):
                        rows.append({
                            "file": f"{subject_key}/{modality}", "subject": subject_key, "modality": modality,
                            "held_out": held_out,
                            "pattern": setting.pattern, "acceleration": int(setting.acceleration),
                            "effective_acceleration": float(setting.effective_acceleration),
                            "method": method, "protocol": protocol,
                            **{m: float(values[m][index]) for m in ("psnr", "ssim", "nmse")},
                        })
    per_image = pd.DataFrame(rows)
    summary, cells, settings_means = {}, [], []
    for (protocol, method), group in per_image.groupby(["protocol", "method"]):
        aggregated = aggregate(group.to_dict("records"))
        summary.setdefault(protocol, {})[method] = aggregated["overall"]
        cells.append(aggregated["per_cell"].assign(protocol=protocol, method=method))
        setting_mean = aggregate(group.to_dict("records"), cell_keys=("modality", "pattern", "acceleration"))["per_cell"]
        settings_means.append(setting_mean.assign(protocol=protocol, method=method))
    per_cell = pd.concat(cells, ignore_index=True)
    per_setting = pd.concat(settings_means, ignore_index=True)
    validation_rows = per_image[per_image.protocol == "validation"]
    for task in (1, 2):
        summary[f"official_task{task}"] = {method: official_task_scores(group.to_dict("records"), task)
                                           for method, group in validation_rows.groupby("method")}
    summary["sense_regularisation"] = sense_weights
    summary["effective_acceleration"] = {f"{p}{r}": round(float(v), 3) for (p, r), v in
                                         settings.groupby(["pattern", "acceleration"])["effective_acceleration"].mean().items()}
    summary["labels"] = VIEW_LABELS
    summary["learned_vs_zero_filled"] = wins_per_cell(per_cell[per_cell.protocol == "validation"], "learned", "zero_filled")
    summary["learned_vs_sense"] = wins_per_cell(per_cell[per_cell.protocol == "validation"], "learned", "sense")
    out = ctx.out("evaluation")
    with atomic_directory(out) as staging:
        write_tables(staging, {"per_image.csv": per_image, "per_cell.csv": per_cell, "per_setting.csv": per_setting,
                               "sense_tuning.csv": tuning})
        save_examples(staging / "examples.npz", examples)
    with atomic_directory(ctx.out("plots")) as staging:
        validation = per_setting[per_setting.protocol == "validation"]
        for metric in ("psnr", "ssim"):
            for pattern, table in pattern_curves(validation, metric).items():
                write_table(staging / f"{metric}_{pattern}.csv", table)
    with atomic_directory(ctx.out("submission")) as staging:
        for export in exports:
            export_setting(staging, *export)
    write_json(ctx.out("metrics/evaluate.json"), summary)
    write_claims(ctx, paper_claims(summary))
    ctx.log_artifact(out / "per_cell.csv")
    # Seconds per method vary run to run: MLflow only, never the hashed metrics file.
    return {**{f"{protocol}.{method}.{m}": v for protocol in (*PROTOCOLS, "fastmri")
               for method, values in summary[protocol].items() for m, v in values.items()},
            **{f"official_task{task}.{method}.{m}": v for task in (1, 2)
               for method, values in summary[f"official_task{task}"].items() for m, v in values["All"].items()},
            **{f"sense_weight.{k}": v for k, v in sense_weights.items()},
            **{f"seconds.{method}": value for method, value in timing.items()}}


def paper_claims(summary: dict) -> list[Claim]:
    """Learned beats zero-filled in every cell; learned against the tuned SENSE per official task, as measured."""
    wins = summary["learned_vs_zero_filled"]
    overall = summary["validation"]
    claims = [Claim(
        id="learned_beats_zero_filled",
        claim="A learned unrolled network reconstructs undersampled multi-coil cardiac k-space better than zero-filling "
              "in every modality and undersampling pattern.",
        source="CMRxRecon2024 paper, baselines; the challenge's premise",
        measured={"cells": wins["cells"], "psnr_wins": wins["psnr"], "ssim_wins": wins["ssim"], "nmse_wins": wins["nmse"],
                  "learned_psnr": overall["learned"]["psnr"], "zero_filled_psnr": overall["zero_filled"]["psnr"]},
        comparison="learned has higher official PSNR and SSIM and lower NMSE in all (modality, pattern) cells "
                   "(validation protocol)",
        holds=wins["psnr"] == wins["ssim"] == wins["nmse"] == wins["cells"],
    )]
    for task in (1, 2):
        scores = summary[f"official_task{task}"]
        if "learned" not in scores or "sense" not in scores:
            continue
        learned, sense = scores["learned"]["All"], scores["sense"]["All"]
        if not (np.isfinite(learned["psnr"]) and np.isfinite(sense["psnr"])):
            continue
        claims.append(Claim(
            id=f"learned_beats_sense_task{task}",
            claim=f"A learned unrolled network beats SENSE with ESPIRiT maps on the official Task {task} score.",
            source="CMRxRecon2024 paper, baselines (parallel imaging); Val_Score2024.py cells",
            measured={**{f"learned_{m}": v for m, v in learned.items()}, **{f"sense_{m}": v for m, v in sense.items()},
                      **{f"sense_weight_{k}": v for k, v in summary["sense_regularisation"].items()},
                      **{f"effective_R_{k}": v for k, v in summary["effective_acceleration"].items()}},
            comparison=f"official Task {task} All_PSNR and All_SSIM higher and All_NMSE lower for learned than for SENSE "
                       "with its Tikhonov weight tuned per setting on training subjects",
            holds=learned["psnr"] > sense["psnr"] and learned["ssim"] > sense["ssim"] and learned["nmse"] < sense["nmse"],
        ))
    return claims


def wins_per_cell(per_cell: pd.DataFrame, method: str, baseline: str) -> dict[str, int]:
    """In how many (modality, pattern) cells ``method`` beats ``baseline`` on each metric."""
    keys = ["modality", "pattern"]
    ours = per_cell[per_cell.method == method].set_index(keys)
    theirs = per_cell[per_cell.method == baseline].set_index(keys)
    return {
        "cells": len(ours),
        "psnr": int((ours.psnr > theirs.psnr).sum()),
        "ssim": int((ours.ssim > theirs.ssim).sum()),
        "nmse": int((ours.nmse < theirs.nmse).sum()),
    }


def save_examples(path: Path, examples: dict) -> None:
    arrays = {}
    for (pattern, acceleration), example in examples.items():
        prefix = f"{pattern}{acceleration}"
        for name, value in example.items():
            arrays[f"{prefix}/{name}"] = np.asarray(value)
    write_npz(path, arrays)


if __name__ == "__main__":
    run_stage(evaluate)
