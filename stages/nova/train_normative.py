"""nova-train_normative: fit the normative detector on healthy slices only (never on the benchmark).

The healthy slices are split (deterministically by seed) into a fitting part, whose descriptors
form the memory banks, and a calibration part, whose anomaly maps set the detection threshold
and measure how often the detector fires on a healthy slice.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_png, read_table
from stages.common.params import StrictModel
from stages.common.paths import from_portable, resolve_inside
from stages.common.runtime import progress
from stages.common.stage import run_stage
from stages.nova.dataset import to_unit
from stages.nova.normative import DetectorConfig, NormativeModel, boxes_from_anomaly_map, fit_normative_model, prepare

STUDY = "nova"


class TrainNormativeParams(StrictModel):
    size: int = 128
    bank_size: int = 6000
    depth_weight: float = 0.5
    smoothing_sigma: float = 1.5
    threshold_quantile: float = 0.99
    calibration_fraction: float = 0.25
    min_area: int = 8


def healthy_root(study_data: Path, repo: Path) -> Path:
    return from_portable(json.loads((study_data / "interim" / "ingest" / "dataset.json").read_text())["healthy_root"], repo)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` numpy reads, with fixed zip timestamps so equal arrays give equal bytes."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(arrays[name]), allow_pickle=False)


def load_model(models_dir: Path) -> NormativeModel:
    """The detector this stage saved."""
    with np.load(models_dir / "normative.npz", allow_pickle=False) as arrays:
        return NormativeModel.from_arrays({k: arrays[k] for k in arrays.files})


def main() -> None:
    with run_stage(STUDY, "train_normative", TrainNormativeParams) as ctx:
        p = ctx.params
        config = DetectorConfig(p.size, p.bank_size, p.depth_weight, p.smoothing_sigma)
        root = healthy_root(ctx.data, ctx.root)
        table = read_table(ctx.data / "interim" / "ingest" / "healthy.csv", ("filename", "plane", "sequence"),
                           dtype={"filename": str}, keep_default_na=False)
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
            raise BadInputError(f"nova-train_normative: {len(prepared)} healthy slices leave none to fit after calibration")
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
        out = ctx.data / "models"
        with atomic_directory(out) as staging:
            write_npz(staging / "normative.npz", model.to_arrays())
            write_json(staging / "normative.json", {"config": config.__dict__, **summary})
        write_json(ctx.data / "metrics" / "train_normative.json", summary)
        ctx.log_metrics({**{k: v for k, v in summary.items() if isinstance(v, (int, float))}, "fit_seconds": seconds})
        ctx.log_artifact(out / "normative.json")


if __name__ == "__main__":
    main()
