"""Image-quality metrics and the scoring protocol of CMRxRecon2024.

Official definition (``official_metrics``): CmrxRecon/CMRxRecon2025-snippets,
``evaluation-2024/Evaluation.py`` (``calmetric``, ``normalize_std``, ``psnr``, ``ssim``,
``nmse``) as called by ``evaluation-2024/Main_Score2024.py`` / ``Val_Score2024.py`` /
``Test_Score2024.py``. Those call ``calmetric(gtmat, reconmat)`` while the function's
parameters are named ``(pred_recon, gt_recon)``, so inside it the roles are swapped:

- 4-D data (cine, mapping, tagging, aorta, flow; ``(sx, sy, slice, frame)``): per image
  ``psnr(recon_z, gt_z)``, ``ssim(recon_z, gt_z)``, ``nmse(recon_z, gt_z)`` -> the PSNR/SSIM
  ``data_range`` is ``max(recon_z)`` and the NMSE denominator ``||recon_z||^2``.
- 3-D data (BlackBlood; ``(sx, sy, slice)``): ``psnr(gt_z, recon_z)`` etc. -> ``data_range``
  ``max(gt_z)``, NMSE denominator ``||gt_z||^2``.

where ``x_z = (x - mean(x)) / (std(x) + eps)`` per 2-D image. PSNR and SSIM are scikit-image's
``peak_signal_noise_ratio`` and ``structural_similarity`` (7 x 7 uniform window, K1 0.01,
K2 0.03, sample covariance, mean over the window centres at least 3 pixels from the border).
The stored 2024 ``Evaluation.py`` divides by the plain ``np.std``; the study note and the
2025 scorer add ``1e-8`` (default here, ``eps``); the difference is ~1e-8 relative.

Validation protocol (``select_validation_slices_frames``, ``validation_crop``):
CmrxRecon/CMRxRecon2024 ``CMRxReconDemo/run4Ranking.m`` (and its port
``ReconTutorial/run4ranking.py``). Aggregation (``aggregate``): ``Main_Score2024.py``
``statis_metrics_and_num_files`` and the final ``np.nanmean`` over cells.

The fastMRI definition (``fastmri_metrics``) is offered separately under its own name.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
ZSCORE_EPS = 1e-8
METRIC_NAMES = ("psnr", "ssim", "nmse")
# The reconstructions every cell compares, in report order.
METHODS = ("zero_filled", "sense", "learned")


class MetricInputError(ValueError):
    """Inputs to a metric have the wrong shape or layout."""


def _check_batch(gt: Any, recon: Any) -> None:
    if tuple(gt.shape) != tuple(recon.shape):
        raise MetricInputError(
            f"ground truth {tuple(gt.shape)} and reconstruction {tuple(recon.shape)} differ in shape"
        )
    if gt.ndim != 3:
        raise MetricInputError(f"expected a batch of 2-D images (N, H, W), got shape {tuple(gt.shape)}")
    if min(gt.shape[1:]) < SSIM_WINDOW:
        raise MetricInputError(
            f"images {tuple(gt.shape[1:])} are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )


def zscore(images: np.ndarray, eps: float = ZSCORE_EPS) -> np.ndarray:
    """Per-image ``(x - mean) / (std + eps)`` over the last two axes (population std)."""
    images = np.asarray(images, dtype=np.float64)
    mean = images.mean(axis=(-2, -1), keepdims=True)
    std = images.std(axis=(-2, -1), keepdims=True)
    return (images - mean) / (std + eps)


def _ssim_batch(x: np.ndarray, y: np.ndarray, data_range: np.ndarray) -> np.ndarray:
    """scikit-image's SSIM for each image pair of ``(N, H, W)`` batches, ``data_range (N,)``.

    Same filter (``scipy.ndimage.uniform_filter``, size 7, per image), same sample-covariance
    factor 49/48 and the same border crop of 3 pixels before the mean as skimage 0.2x.
    """
    from scipy.ndimage import uniform_filter  # imported here so the report step does not load scipy

    size = (1, SSIM_WINDOW, SSIM_WINDOW)
    ux = uniform_filter(x, size=size)
    uy = uniform_filter(y, size=size)
    uxx = uniform_filter(x * x, size=size)
    uyy = uniform_filter(y * y, size=size)
    uxy = uniform_filter(x * y, size=size)
    n_window = SSIM_WINDOW**2
    cov_norm = n_window / (n_window - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = ((SSIM_K1 * data_range) ** 2)[:, None, None]
    c2 = ((SSIM_K2 * data_range) ** 2)[:, None, None]
    s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (SSIM_WINDOW - 1) // 2
    return s_map[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def _psnr_batch(reference: np.ndarray, test: np.ndarray, data_range: np.ndarray) -> np.ndarray:
    mse = np.mean((reference - test) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / mse)


def _nmse_batch(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    return np.sum((reference - test) ** 2, axis=(1, 2)) / np.sum(reference**2, axis=(1, 2))


def _official_metrics_torch(gt: Any, recon: Any, blackblood: bool, eps: float) -> dict[str, np.ndarray]:
    """Same computation as the numpy path, in float64 torch on the tensors' device."""
    import torch
    import torch.nn.functional as F

    gt = gt.to(torch.float64)
    recon = recon.to(torch.float64)

    def zs(images: torch.Tensor) -> torch.Tensor:
        mean = images.mean(dim=(-2, -1), keepdim=True)
        std = images.std(dim=(-2, -1), keepdim=True, unbiased=False)
        return (images - mean) / (std + eps)

    gt_z, recon_z = zs(gt), zs(recon)
    # The scorer's first argument ("gt" inside Evaluation.py) sets data_range and the NMSE norm.
    first, second = (gt_z, recon_z) if blackblood else (recon_z, gt_z)
    data_range = first.amax(dim=(1, 2))
    mse = ((first - second) ** 2).mean(dim=(1, 2))
    psnr = 10 * torch.log10(data_range**2 / mse)
    nmse = ((first - second) ** 2).sum(dim=(1, 2)) / (first**2).sum(dim=(1, 2))

    def box(images: torch.Tensor) -> torch.Tensor:  # mean over the valid 7x7 windows
        return F.avg_pool2d(images[:, None], SSIM_WINDOW, stride=1)[:, 0]

    x, y = first, second
    ux, uy, uxx, uyy, uxy = box(x), box(y), box(x * x), box(y * y), box(x * y)
    cov_norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1 = ((SSIM_K1 * data_range) ** 2)[:, None, None]
    c2 = ((SSIM_K2 * data_range) ** 2)[:, None, None]
    s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    ssim = s_map.mean(dim=(1, 2))
    return {
        "psnr": psnr.cpu().numpy(),
        "ssim": ssim.cpu().numpy(),
        "nmse": nmse.cpu().numpy(),
    }


def official_metrics(
    gt: np.ndarray, recon: np.ndarray, blackblood: bool = False, eps: float = ZSCORE_EPS
) -> dict[str, np.ndarray]:
    """Official CMRxRecon2024 per-image PSNR, SSIM and NMSE of magnitude images ``(N, H, W)``.

    Follows ``evaluation-2024/Evaluation.py::calmetric`` as ``Main_Score2024.py`` calls it
    (see the module docstring for the swapped argument order): both images are z-scored;
    for ``blackblood=False`` (4-D data) ``data_range = max(recon_z)`` and
    ``nmse = ||recon_z - gt_z||^2 / ||recon_z||^2``; for ``blackblood=True`` (3-D data)
    ``data_range = max(gt_z)`` and the NMSE denominator is ``||gt_z||^2``. SSIM uses the same
    data range. Vectorised over the batch; torch tensors (e.g. on CUDA) are computed on their
    device in float64. Returns numpy arrays ``psnr``, ``ssim``, ``nmse`` of shape ``(N,)``.
    Identical images give ``psnr = inf``, ``ssim = 1``, ``nmse = 0``.
    """
    _check_batch(gt, recon)
    if type(gt).__module__.startswith("torch") and type(recon).__module__.startswith("torch"):
        return _official_metrics_torch(gt, recon, blackblood, eps)
    gt_z = zscore(np.asarray(gt), eps)
    recon_z = zscore(np.asarray(recon), eps)
    first, second = (gt_z, recon_z) if blackblood else (recon_z, gt_z)
    data_range = first.max(axis=(1, 2))
    return {
        "psnr": _psnr_batch(first, second, data_range),
        "ssim": _ssim_batch(first, second, data_range),
        "nmse": _nmse_batch(first, second),
    }


def fastmri_metrics(gt_volume: np.ndarray, recon_volume: np.ndarray) -> dict[str, float]:
    """fastMRI's volume-wise metrics (fastmri/evaluate.py), NOT the CMRxRecon definition.

    ``gt_volume``/``recon_volume``: magnitude ``(S, H, W)`` (or one ``(H, W)`` image).
    ``psnr`` with ``data_range = gt.max()`` over the whole volume; ``ssim`` the mean over
    slices of skimage SSIM with the volume's ``gt.max()``; ``nmse = ||gt - rec||^2 / ||gt||^2``.
    """
    gt = np.asarray(gt_volume, dtype=np.float64)
    recon = np.asarray(recon_volume, dtype=np.float64)
    if gt.ndim == 2:
        gt, recon = gt[None], recon[None]
    _check_batch(gt, recon)
    max_value = gt.max()
    mse = np.mean((gt - recon) ** 2)
    with np.errstate(divide="ignore"):
        psnr = 10 * np.log10(max_value**2 / mse)
    ssim = _ssim_batch(gt, recon, np.full(gt.shape[0], max_value)).mean()
    nmse = np.sum((gt - recon) ** 2) / np.sum(gt**2)
    return {"psnr": float(psnr), "ssim": float(ssim), "nmse": float(nmse)}


# --- validation protocol (run4Ranking.m) -----------------------------------------------------


def _matlab_round(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else int(math.ceil(x - 0.5))


def is_blackblood(modality: str) -> bool:
    return "blackblood" in modality.lower()


def is_mapping(modality: str) -> bool:
    return "t1map" in modality.lower() or "t2map" in modality.lower()


def validation_indices(nz: int, nt: int, modality: str) -> tuple[list[int], list[int]]:
    """0-based (slices, frames) that run4Ranking.m keeps for ranking.

    Slices: all when ``nz < 3``, else the central two, ``round(nz/2) - 2`` and
    ``round(nz/2) - 1`` (MATLAB ``(round(sz/2)-1):(round(sz/2))``). Frames: ``[0]`` for
    BlackBlood (no time axis), all weightings for T1map/T2map, else the first three.
    """
    if nz < 1 or nt < 1:
        raise MetricInputError(f"{modality}: need at least one slice and one frame, got nz={nz}, nt={nt}")
    slices = list(range(nz)) if nz < 3 else [_matlab_round(nz / 2) - 2, _matlab_round(nz / 2) - 1]
    if is_blackblood(modality):
        frames = [0]
    elif is_mapping(modality):
        frames = list(range(nt))
    else:
        if nt < 3:
            raise MetricInputError(f"{modality}: run4Ranking keeps the first 3 frames but the data has nt={nt}")
        frames = [0, 1, 2]
    return slices, frames


def select_validation_slices_frames(volume: np.ndarray, modality: str) -> np.ndarray:
    """Keep the slices/frames run4Ranking.m scores (see ``validation_indices``).

    ``volume``: ``(nt, nz, H, W)``, or ``(nz, H, W)`` for BlackBlood. Returns
    ``(frames, slices, H, W)``, or ``(slices, H, W)`` for BlackBlood.
    """
    volume = np.asarray(volume)
    if is_blackblood(modality):
        if volume.ndim != 3:
            raise MetricInputError(f"{modality}: expected (nz, H, W), got shape {volume.shape}")
        slices, _ = validation_indices(volume.shape[0], 1, modality)
        return volume[slices]
    if volume.ndim != 4:
        raise MetricInputError(f"{modality}: expected (nt, nz, H, W), got shape {volume.shape}")
    slices, frames = validation_indices(volume.shape[1], volume.shape[0], modality)
    return volume[np.ix_(frames, slices)]


def validation_crop_shape(ny: int, nx: int) -> tuple[int, int]:
    """run4Ranking's crop ``[round(sx/3), round(sy/2)]`` in this layout: ``(round(ny/2), round(nx/3))``.

    MATLAB's ``sx`` is the first (readout, kx) axis = our last axis ``nx``; ``sy`` = ``ny``.
    """
    return _matlab_round(ny / 2), _matlab_round(nx / 3)


def center_crop(images: np.ndarray, crop_shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop the last two axes to ``crop_shape = (h, w)`` as MATLAB ``crop.m`` does.

    The kept block starts at ``size//2 + ceil(-crop/2)`` (0-based) on each axis.
    """
    height, width = images.shape[-2:]
    crop_h, crop_w = crop_shape
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise MetricInputError(f"crop {crop_shape} does not fit images of size {(height, width)}")
    y0 = height // 2 + math.ceil(-crop_h / 2)
    x0 = width // 2 + math.ceil(-crop_w / 2)
    return images[..., y0 : y0 + crop_h, x0 : x0 + crop_w]


def validation_crop(images: np.ndarray) -> np.ndarray:
    """The validation protocol's centre crop of ``(..., ny, nx)`` to ``(round(ny/2), round(nx/3))``.

    The test protocol (``Test_Score2024.py``, "No cropping on the GT data") skips it.
    """
    return center_crop(images, validation_crop_shape(*images.shape[-2:]))


# --- aggregation (Main_Score2024.py) ---------------------------------------------------------


def official_modality_group(modality: str) -> str:
    """The scorer's modality cell: cine_* -> Cine, T1map/T2map -> Mapping, aorta_* -> Aorta."""
    name = modality.lower()
    if "cine" in name:
        return "Cine"
    if "map" in name:
        return "Mapping"
    if "aorta" in name:
        return "Aorta"
    return {"tagging": "Tagging", "blackblood": "BlackBlood", "flow2d": "Flow2d"}.get(name, modality)


def official_mask_name(pattern: str, acceleration: int) -> str:
    """The scorer's mask cell: ``Uniform4``/``Uniform8``/``Uniform10`` in Task 1; the k-t
    pattern name alone (all accelerations pooled) in Task 2."""
    return f"{pattern}{int(acceleration)}" if pattern == "Uniform" else pattern


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    cell_keys: Sequence[str] = ("modality", "pattern"),
) -> dict[str, Any]:
    """Mean per file -> mean per cell -> mean over cells (Main_Score2024.py's ranking).

    ``rows``: dicts with ``file, modality, pattern, acceleration, psnr, ssim, nmse`` (one per
    image or per file). A "file" is one reconstruction, i.e. one (file, modality, pattern,
    acceleration). Cells default to (modality, pattern); the official Task-1/2 cells are
    ``(official_modality_group(m), official_mask_name(p, R))``: put those into the rows'
    fields or add them as extra keys named in ``cell_keys``.

    Returns ``per_file`` and ``per_cell`` DataFrames (``per_cell`` with ``n_files``) and
    ``overall``, a dict of the means over cells (NaN cells skipped, as ``np.nanmean``).
    """
    frame = pd.DataFrame(list(rows))
    required = {"file", "modality", "pattern", "acceleration", *METRIC_NAMES, *cell_keys}
    missing = sorted(required - set(frame.columns))
    if frame.empty or missing:
        raise MetricInputError(f"aggregate: rows are empty or lack fields {missing}")
    file_keys = list(dict.fromkeys(["file", "modality", "pattern", "acceleration", *cell_keys]))
    per_file = frame.groupby(file_keys, as_index=False, sort=True)[list(METRIC_NAMES)].mean()
    per_cell = per_file.groupby(list(cell_keys), as_index=False, sort=True).agg(
        **{name: (name, "mean") for name in METRIC_NAMES}, n_files=("file", "size")
    )
    overall = {name: float(np.nanmean(per_cell[name].to_numpy(dtype=np.float64))) for name in METRIC_NAMES}
    return {"per_file": per_file, "per_cell": per_cell, "overall": overall}


# --- the official Task 1 / Task 2 cells (Val_Score2024.py) -----------------------------------

# Val_Score2024.py ``main``: Task 1 scores its modality groups x Uniform 4/8/10; Task 2 (no Flow2d,
# no BlackBlood) its groups x the three k-t patterns, every acceleration pooled in a pattern.
OFFICIAL_TASKS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    1: (("Tagging", "Mapping", "Cine", "Aorta", "BlackBlood", "Flow2d"), ("Uniform4", "Uniform8", "Uniform10")),
    2: (("Tagging", "Mapping", "Cine", "Aorta"), ("ktUniform", "ktGaussian", "ktRadial")),
}


def official_task_scores(rows: Iterable[Mapping[str, Any]], task: int) -> dict[str, Any]:
    """One task's score as ``Val_Score2024.py`` computes it, from per-image (or per-file) rows.

    ``rows``: dicts with ``file, modality, pattern, acceleration, psnr, ssim, nmse``. Per file
    and mask the mean over its images (the scorer's one row per reconstruction); per official
    cell ``(official_modality_group, official_mask_name)`` the mean over its files, rounded to
    4 decimals; ``All`` the ``nanmean`` of the rounded cells, rounded to 4 (cells without files
    are NaN and skipped, as there). Rows outside the task's cells are not scored.

    Returns ``{"cells": {"<Group>_<Mask>": {psnr, ssim, nmse, n_files}}, "All": {psnr, ssim, nmse}}``;
    ``n_files == 0`` marks a cell this run has no file for.
    """
    groups, masks = OFFICIAL_TASKS[task]
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise MetricInputError("official_task_scores: no rows")
    frame = frame.assign(group=[official_modality_group(m) for m in frame["modality"]],
                         mask=[official_mask_name(p, r) for p, r in zip(frame["pattern"], frame["acceleration"])])
    per_file = frame.groupby(["file", "group", "mask", "acceleration"], as_index=False)[list(METRIC_NAMES)].mean()
    cells, collected = {}, {name: [] for name in METRIC_NAMES}
    for group in groups:
        for mask in masks:
            files = per_file[(per_file["group"] == group) & (per_file["mask"] == mask)]
            # round() of a numpy float is numpy's rounding, as in the scorer (not Python's float rounding)
            cell = {name: float(round(np.float64(files[name].mean()), 4)) if len(files) else float("nan")
                    for name in METRIC_NAMES}
            for name in METRIC_NAMES:
                collected[name].append(cell[name])
            cells[f"{group}_{mask}"] = {**cell, "n_files": len(files)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no cell of the task was run
        overall = {name: float(round(np.nanmean(values), 4)) for name, values in collected.items()}
    return {"cells": cells, "All": overall}
