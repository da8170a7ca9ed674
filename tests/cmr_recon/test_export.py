"""The official submission export, scored as the official scorer would score it."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from stages.cmr_recon.evaluate import score
from stages.cmr_recon.export import GROUND_TRUTH, export_setting
from stages.cmr_recon.io import parse_undersampled_name
from stages.cmr_recon.metrics import official_metrics, official_task_scores, validation_indices
from tests.cmr_recon.test_metrics import official_val_score


def volume(nt: int, nz: int, ny: int, nx: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    base = (x**2 / 0.6 + y**2 / 0.4 < 1) * 1.0
    return np.abs(base[None, None] + 0.05 * rng.standard_normal((nt, nz, ny, nx)))


def run4ranking_reference(magnitude: np.ndarray, modality: str) -> np.ndarray:
    """run4Ranking.m on a MATLAB-ordered (sx, sy, sz, t) magnitude, 1-based indices and crop.m as written."""
    sx, sy = magnitude.shape[:2]
    sz = magnitude.shape[2]
    t = 1 if modality == "blackblood" else magnitude.shape[3]
    slices = list(range(1, sz + 1)) if sz < 3 else [int(np.floor(sz / 2 + 0.5)) - 1, int(np.floor(sz / 2 + 0.5))]
    frames = [1] if modality == "blackblood" else (list(range(1, t + 1)) if "map" in modality else [1, 2, 3])
    cx, cy = int(np.floor(sx / 3 + 0.5)), int(np.floor(sy / 2 + 0.5))
    x0, y0 = sx // 2 + int(np.ceil(-cx / 2)), sy // 2 + int(np.ceil(-cy / 2))  # crop.m: floor(s/2)+1+ceil(-c/2), 1-based
    kept = magnitude[x0:x0 + cx, y0:y0 + cy][:, :, np.array(slices) - 1]
    return kept if modality == "blackblood" else kept[..., np.array(frames) - 1]


def test_the_export_scored_by_the_official_logic_equals_evaluates_official_scores(tmp_path):
    files = [("ValidationSet/P001", "cine_sax", 8, 3), ("ValidationSet/P001", "T1map", 5, 2),
             ("ValidationSet/P002", "cine_sax", 8, 4), ("ValidationSet/P002", "blackblood", 1, 3),
             ("ValidationSet/P002", "tagging", 6, 1)]
    settings = [("Uniform", 4), ("Uniform", 8), ("ktUniform", 8), ("ktRadial", 16)]
    rows, seed = [], 0
    for subject_key, modality, nt, nz in files:
        ny, nx = 40 + 2 * nz, 33 + nt  # odd and even sizes: the crop's rounding matters
        slices, frames = validation_indices(nz, nt, modality)
        target_volume = volume(nt, nz, ny, nx, seed)
        pairs = [(z, t) for t in frames for z in slices]
        target = np.stack([target_volume[t, z] for z, t in pairs])
        for pattern, r in settings:
            if modality == "blackblood" and pattern.startswith("kt"):
                continue
            seed += 1
            recon = target + 0.1 * r * np.random.default_rng(seed).standard_normal(target.shape)
            images = {"learned": np.abs(recon)}
            export_setting(tmp_path, modality, subject_key, f"{modality}_kus_{pattern}{r}.mat", len(frames), len(slices),
                           target, images)
            # evaluate's rows, as evaluate builds them (validation protocol)
            values = score(target, images["learned"], modality == "blackblood")["validation"]
            rows += [{"file": f"{subject_key}/{modality}", "modality": modality, "pattern": pattern, "acceleration": r,
                      **{m: float(values[m][i]) for m in ("psnr", "ssim", "nmse")}} for i in range(len(values["psnr"]))]
            # the exported ground truth is run4Ranking.m applied to the full MATLAB-ordered volume
            matlab = target_volume[:, :, :, :].transpose(3, 2, 1, 0)  # (sx=nx, sy=ny, sz, t)
            if modality == "blackblood":
                matlab = matlab[..., 0]
            gt_file = tmp_path / GROUND_TRUTH / "MultiCoil"
            found = list(gt_file.rglob(f"{subject_key.split('/')[1]}/{modality}_kus_{pattern}{r}.mat"))
            assert len(found) == 1
            with h5py.File(found[0]) as handle:
                stored = handle["img4ranking"][()]
                assert handle["img4ranking"].attrs["MATLAB_class"] == b"single"
            np.testing.assert_allclose(stored.T, run4ranking_reference(matlab, modality), rtol=1e-6)

    # Score the exported tree the way Main/Val_Score2024.py does: every submitted file against the
    # ground truth file of the same relative path, per-image metrics, one row per (case, file, mask).
    ranks = []
    for path in sorted((tmp_path / "learned").rglob("*.mat")):
        relative = path.relative_to(tmp_path / "learned")
        with h5py.File(path) as handle:
            recon = handle["img4ranking"][()].astype(np.float64)
        with h5py.File(tmp_path / GROUND_TRUTH / relative) as handle:
            gt = handle["img4ranking"][()].astype(np.float64)
        name = parse_undersampled_name(path.name)
        blackblood = name["modality"] == "blackblood"
        metrics = official_metrics(gt.reshape(-1, *gt.shape[-2:]), recon.reshape(-1, *recon.shape[-2:]), blackblood)
        ranks.append({"Case": relative.parts[-2], "File": name["modality"], "KUS": f"{name['pattern']}{name['acceleration']}",
                      "Task": relative.parts[-3], **{m.upper(): float(np.mean(v)) for m, v in metrics.items()}})
    ranks = pd.DataFrame(ranks)
    assert set(ranks.Task) == {"Task1", "Task2"} and len(ranks) == 5 * 4 - 2
    for task in (1, 2):
        official = official_val_score(ranks[ranks.Task == f"Task{task}"], task)
        ours = official_task_scores(rows, task)
        for metric in ("psnr", "ssim", "nmse"):
            assert ours["All"][metric] == official[f"All_{metric.upper()}"], (task, metric)
            for cell, values in ours["cells"].items():
                assert values[metric] == official[f"{cell}_{metric.upper()}"] or (
                    np.isnan(values[metric]) and np.isnan(official[f"{cell}_{metric.upper()}"]))


def test_submission_paths_follow_mainrun4ranking():
    from stages.cmr_recon.export import submission_path

    root = Path("/s")
    assert submission_path(root, "cine_sax", "ValidationSet/P001", "cine_sax_kus_Uniform4.mat") == \
        root / "MultiCoil/Cine/ValidationSet/Task1/P001/cine_sax_kus_Uniform4.mat"
    assert submission_path(root, "T2map", "TestSet/P010", "T2map_kus_ktRadial16.mat") == \
        root / "MultiCoil/Mapping/TestSet/Task2/P010/T2map_kus_ktRadial16.mat"
