"""cmr_recon-evaluate: zero-filled, SENSE (ESPIRiT maps) and the learned model on the held-out subjects.

Scored with the official CMRxRecon2024 metrics on the validation protocol (central slices,
first frames, centre crop) and the uncropped test protocol, and with fastMRI's metrics under
their own name. Aggregation: per file, per (modality, pattern) cell, overall.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from stages.cmr_recon.classical import espirit_maps, sense_magnitude, sense_recon, time_averaged_kspace, zero_filled
from stages.cmr_recon.dataset import load_manifest, manifest_file, with_time_axis
from stages.cmr_recon.io import read_kspace, read_mask
from stages.cmr_recon.learned import build_inputs, condition_indices, load_model, reconstruct
from stages.cmr_recon.masks import acs_mask
from stages.cmr_recon.metrics import METHODS, aggregate, fastmri_metrics, official_metrics, validation_crop, validation_indices
from stages.cmr_recon.transforms import ifft2c, rss
from stages.common.atomic import atomic_directory, write_json
from stages.common.claims import Claim, write_claims
from stages.common.io import read_table, write_npz, write_table, write_tables
from stages.common.params import StrictModel
from stages.common.paths import resolve_inside
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage

PROTOCOLS = {"validation": validation_crop, "test": lambda images: images}


class EvaluateParams(StrictModel):
    sense_iterations: int = Field(ge=1)
    sense_regularisation: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def score(target: np.ndarray, images: np.ndarray, blackblood: bool) -> dict[str, dict[str, np.ndarray]]:
    """Official per-image metrics under both protocols, and fastMRI's volume metrics."""
    scores = {name: official_metrics(crop(target), crop(images), blackblood=blackblood) for name, crop in PROTOCOLS.items()}
    scores["fastmri"] = {k: np.array([v]) for k, v in fastmri_metrics(target, images).items()}
    return scores


def reconstruct_all(full, kus, mask, pairs, pattern, acceleration, modality, acs, model, device, params, maps_cache):
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
        if z not in maps_cache:
            maps_cache[z] = espirit_maps(time_averaged_kspace(kus[:, z], mask))
        frame_mask = mask[t % mask.shape[0]]
        image = sense_recon(kus[t, z], frame_mask, maps_cache[z], max_iter=params.sense_iterations,
                            lamda=params.sense_regularisation)
        sense.append(sense_magnitude(image, maps_cache[z]))
    images["sense"] = np.stack(sense)
    seconds["sense"] = time.perf_counter() - started
    started = time.perf_counter()
    inputs = build_inputs(kus, mask, acs_mask(pattern, nx, ny, acs=acs), pairs, (model.num_frames - 1) // 2,
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
                          ("subject", "modality", "pattern", "acceleration", "kus_path", "mask_path", "full_path", "acs"))
    model = load_model(ctx.dep("models"), device)
    rows, examples, timing = [], {}, defaultdict(float)
    groups = list(settings.groupby(["subject", "modality"], sort=True))
    for (subject, modality), file_settings in progress(groups, "evaluating files", len(groups)):
        full = with_time_axis(read_kspace(manifest_file(dataset_root, file_settings["full_path"].iloc[0])))
        nt, nz = full.shape[:2]
        slices, frames = validation_indices(nz, nt, modality)
        pairs = [(z, t) for t in frames for z in slices]
        blackblood = modality == "blackblood"
        held_out = bool(manifest.loc[(manifest.subject == subject) & (manifest.modality == modality), "held_out"].iloc[0])
        maps_cache: dict[int, np.ndarray] = {}
        for setting in file_settings.itertuples():
            kus_file = resolve_inside(undersampled_root, setting.kus_path, "kus path")
            kus = with_time_axis(read_kspace(kus_file, key="kus"))
            mask = read_mask(resolve_inside(undersampled_root, setting.mask_path, "mask path"), kus.shape)
            target, images, seconds = reconstruct_all(full, kus, mask, pairs, setting.pattern, int(setting.acceleration),
                                                      modality, int(setting.acs), model, device, ctx.params, maps_cache)
            for method, value in seconds.items():
                timing[method] += value
            key = (setting.pattern, int(setting.acceleration))
            if key not in examples or modality == "cine_sax":
                examples[key] = {"target": target[0], "mask": mask[0], "modality": modality, "subject": subject,
                                 **{m: images[m][0] for m in METHODS}}
            for method in METHODS:
                for protocol, values in score(target, images[method], blackblood).items():
                    for index in range(len(values["psnr"])):
                        rows.append({
                            "file": f"{subject}/{modality}", "subject": subject, "modality": modality,
                            "held_out": held_out,
                            "pattern": setting.pattern, "acceleration": int(setting.acceleration),
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
    summary["learned_vs_zero_filled"] = wins_per_cell(per_cell[per_cell.protocol == "validation"], "learned", "zero_filled")
    summary["learned_vs_sense"] = wins_per_cell(per_cell[per_cell.protocol == "validation"], "learned", "sense")
    out = ctx.out("evaluation")
    with atomic_directory(out) as staging:
        write_tables(staging, {"per_image.csv": per_image, "per_cell.csv": per_cell, "per_setting.csv": per_setting})
        save_examples(staging / "examples.npz", examples)
    with atomic_directory(ctx.out("plots")) as staging:
        validation = per_setting[per_setting.protocol == "validation"]
        for metric in ("psnr", "ssim"):
            for pattern, table in pattern_curves(validation, metric).items():
                write_table(staging / f"{metric}_{pattern}.csv", table)
    write_json(ctx.out("metrics/evaluate.json"), summary)
    write_claims(ctx, paper_claims(summary))
    ctx.log_artifact(out / "per_cell.csv")
    # Seconds per method vary run to run: MLflow only, never the hashed metrics file.
    return {**{f"{protocol}.{method}.{m}": v for protocol in (*PROTOCOLS, "fastmri")
               for method, values in summary[protocol].items() for m, v in values.items()},
            **{f"seconds.{method}": value for method, value in timing.items()}}


def paper_claims(summary: dict) -> list[Claim]:
    """The claims the smoke run tests: learned beats zero-filled in every cell, and (as measured) SENSE."""
    claims = []
    for baseline, name, where in (("zero_filled", "zero-filling", "CMRxRecon2024 paper, baselines; the challenge's premise"),
                                  ("sense", "SENSE with ESPIRiT maps", "CMRxRecon2024 paper, baselines (parallel imaging)")):
        wins = summary[f"learned_vs_{baseline}"]
        overall = summary["validation"]
        claims.append(Claim(
            id=f"learned_beats_{baseline}",
            claim=f"A learned unrolled network reconstructs undersampled multi-coil cardiac k-space better than {name} "
                  "in every modality and undersampling pattern.",
            source=where,
            measured={"cells": wins["cells"], "psnr_wins": wins["psnr"], "ssim_wins": wins["ssim"], "nmse_wins": wins["nmse"],
                      "learned_psnr": overall["learned"]["psnr"], f"{baseline}_psnr": overall[baseline]["psnr"]},
            comparison="learned has higher official PSNR and SSIM and lower NMSE in all (modality, pattern) cells "
                       "(validation protocol)",
            holds=wins["psnr"] == wins["ssim"] == wins["nmse"] == wins["cells"],
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
