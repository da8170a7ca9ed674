"""nova-train_normative: fit the normative detector on healthy slices only (never on the benchmark).

The healthy slices are split (deterministically by seed) into a fitting part, whose descriptors
form the memory banks, and a calibration part, whose anomaly maps set the detection threshold
and measure how often the detector fires on a healthy slice. They are read from where ingest
found them (``data/nova/raw/healthy`` while synthetic, else ``nova.ingest.healthy_source``).
"""
from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_png, read_table
from stages.common.paths import from_portable, resolve_inside
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.nova.dataset import declared_source, ingest_info, to_unit
from stages.nova.normative import MODEL_FILE, DetectorConfig, boxes_from_anomaly_map, fit_normative_model, prepare, save_model


class TrainNormativeParams(DetectorConfig):
    """The detector's config (size, bank_size, depth_weight, smoothing_sigma) plus how it is fitted."""

    threshold_quantile: float = Field(ge=0, le=1)        # of the healthy calibration z-maps (pixels)
    calibration_fraction: float = Field(gt=0, lt=1)      # of the healthy slices, held out to calibrate
    min_area: int = Field(ge=1)                          # pixels of a region that counts as a box (calibration)


def train_normative(ctx: StageContext[TrainNormativeParams]) -> Metrics:
    p = ctx.params
    config = DetectorConfig.of(p)
    ingest = ctx.dep("interim/ingest")
    root = declared_source(ctx, from_portable(ingest_info(ingest)["healthy_root"], ctx.root), "the healthy slices")
    table = read_table(ingest / "healthy.csv", ("filename", "plane", "sequence"), dtype={"filename": str}, keep_default_na=False)
    prepared = []
    for row in progress(table.to_dict("records"), "preparing healthy slices", len(table)):
        pixels = read_png(resolve_inside(root, row["filename"], "healthy filename"))
        if pixels.ndim == 3:
            pixels = pixels[..., :3].mean(axis=2).round().astype(np.uint8)
        image, mask = prepare(to_unit(pixels), config.size)
        prepared.append((image, mask, str(row["sequence"]), str(row["plane"])))
    order = np.random.default_rng(ctx.common.seed).permutation(len(prepared))
    n_calibration = max(1, int(round(p.calibration_fraction * len(prepared))))
    calibration = [prepared[i] for i in sorted(order[:n_calibration])]
    train = [prepared[i] for i in sorted(order[n_calibration:])]
    if not train:
        raise BadInputError(f"{ingest / 'healthy.csv'}: {len(prepared)} healthy slice(s) leave none to fit after "
                            f"calibration (nova.train_normative.calibration_fraction {p.calibration_fraction})")
    started = time.perf_counter()
    model = fit_normative_model(train, calibration, config, p.threshold_quantile, ctx.common.seed)
    seconds = time.perf_counter() - started

    fired, sequence_hits, plane_hits = 0, 0, 0
    for image, mask, sequence, plane in calibration:
        guessed_sequence, guessed_plane = model.classify(image, mask)
        sequence_hits += guessed_sequence == sequence
        plane_hits += guessed_plane == plane
        boxes, _ = boxes_from_anomaly_map(model.anomaly_map(image, mask, guessed_sequence), model.threshold,
                                          p.min_area, 5, image.shape)
        fired += len(boxes) > 0
    summary = {
        "healthy_fit": len(train), "healthy_calibration": len(calibration), "threshold_z": model.threshold,
        "banks": {name: len(bank) for name, bank in model.banks.items()},
        "calibration_sequence_accuracy": sequence_hits / len(calibration),
        "calibration_plane_accuracy": plane_hits / len(calibration),
        "calibration_slices_with_a_box": fired / len(calibration),
    }
    out = ctx.out("models")
    with atomic_directory(out) as staging:
        save_model(staging / MODEL_FILE, model)
        write_json(staging / "normative.json", {"config": config.model_dump(), **summary})
    write_json(ctx.out("metrics/train_normative.json"), summary)
    ctx.log_artifact(out / "normative.json")
    # The fitting time varies run to run: MLflow only, never the hashed metrics file.
    return {**{k: v for k, v in summary.items() if isinstance(v, (int, float))}, "fit_seconds": seconds}


if __name__ == "__main__":
    run_stage(train_normative)
