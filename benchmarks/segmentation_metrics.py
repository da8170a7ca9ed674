"""stages.common.metrics.segmentation against medpy (and MONAI) on a batch of 3-D masks.

20 pairs of 96^3 masks with anisotropic spacing (0.8, 0.8, 2.5) mm, in two kinds:

- ``organ``: a smooth random structure filling ~30 % of each axis (an organ or lesion in a scan),
  the prediction the reference with its boundary moved by smooth noise: the usual case, where the
  crop to the joint bounding box pays;
- ``texture``: smooth random noise thresholded over the whole volume: the worst case for the crop
  (the box is the whole volume), so only the shared pass (2 erosions, 2 distance transforms
  instead of medpy's 8 and 4 for ``hd95`` + ``assd``) counts.

Timed (best of ``--repeats``): ours ``batch_scores`` (Dice, IoU, HD95, ASSD together), medpy
``dc + jc + hd95 + assd`` per pair, medpy ``hd95`` alone, and MONAI 1.6 ``compute_hausdorff_distance
(percentile=95) + compute_average_surface_distance(symmetric=True)`` (KD-tree, float32). Checks that
the values agree (max |difference|). Single-threaded numpy/scipy/torch.
Rerun: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_metrics.py``.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from stages.common.metrics.segmentation import batch_scores

SHAPE = (96, 96, 96)
SPACING = (0.8, 0.8, 2.5)


def organ_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = np.array(SHAPE) * 0.3
    centre = rng.uniform(size / 2 + 4, np.array(SHAPE) - size / 2 - 4)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    radius = np.sqrt((((grid - centre) / (size / 2)) ** 2).sum(-1))
    wobble = gaussian_filter(rng.standard_normal(SHAPE), 4.0)
    wobble /= wobble.std()
    reference = radius + 0.15 * wobble < 1.0
    error = gaussian_filter(rng.standard_normal(SHAPE), 3.0)
    prediction = radius + 0.15 * wobble + 0.1 * error / error.std() < 1.0
    return prediction, reference


def texture_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    field = gaussian_filter(rng.standard_normal(SHAPE), 3.0)
    error = gaussian_filter(rng.standard_normal(SHAPE), 3.0)
    return field + 0.5 * error > 0.5 * field.std(), field > 0.5 * field.std()


def best_of(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def medpy_all(pairs):
    from medpy.metric import binary

    return [(binary.dc(p, r), binary.jc(p, r), binary.hd95(p, r, SPACING), binary.assd(p, r, SPACING),
             (binary.asd(p, r, SPACING) + binary.asd(r, p, SPACING)) / 2) for p, r in pairs]


def medpy_metrics_only(pairs):
    from medpy.metric import binary

    return [(binary.dc(p, r), binary.jc(p, r), binary.hd95(p, r, SPACING), binary.assd(p, r, SPACING)) for p, r in pairs]


def medpy_hd95(pairs):
    from medpy.metric import binary

    return [binary.hd95(p, r, SPACING) for p, r in pairs]


def monai_distances(predictions: np.ndarray, references: np.ndarray):
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p, r = torch.as_tensor(predictions[:, None]).float(), torch.as_tensor(references[:, None]).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(SPACING))
        mean = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=list(SPACING))
    return hd[:, 0].numpy().astype(float), mean[:, 0].numpy().astype(float)


def time_all(pairs, repeats: int):
    predictions, references = np.stack([p for p, _ in pairs]), np.stack([r for _, r in pairs])
    ours_s, ours = best_of(lambda: batch_scores(predictions, references, SPACING), repeats)
    ours_monai_s, ours_monai = best_of(lambda: batch_scores(predictions, references, SPACING, convention="monai"), repeats)
    medpy_s, _ = best_of(lambda: medpy_metrics_only(pairs), repeats)
    medpy_hd_s, _ = best_of(lambda: medpy_hd95(pairs), repeats)
    monai_s, monai = best_of(lambda: monai_distances(predictions, references), repeats)
    return ours_s, ours, ours_monai_s, ours_monai, medpy_s, medpy_hd_s, monai_s, monai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.pairs} pairs of {SHAPE} masks, spacing {SPACING} mm, best of {args.repeats}; times in s for the batch")
    for kind, make in (("organ", organ_pair), ("texture", texture_pair)):
        rng = np.random.default_rng(0)
        pairs = [make(rng) for _ in range(args.pairs)]
        ours_s, ours, ours_monai_s, ours_monai, medpy_s, medpy_hd_s, monai_s, (monai_hd, monai_mean) = time_all(pairs, args.repeats)
        reference = np.array(medpy_all(pairs))
        diffs = {
            "dice": max(abs(s.dice - m) for s, m in zip(ours, reference[:, 0])),
            "iou": max(abs(s.iou - m) for s, m in zip(ours, reference[:, 1])),
            "hd95 medpy": max(abs(s.hd95 - m) for s, m in zip(ours, reference[:, 2])),
            "assd (mean of directed means) medpy": max(abs(s.assd - m) for s, m in zip(ours, reference[:, 4])),
            "assd pooled, monai convention vs medpy 0.5 assd": max(abs(s.assd - m) for s, m in zip(ours_monai, reference[:, 3])),
            "hd95 monai convention vs MONAI (float32)": float(np.max(np.abs([s.hd95 for s in ours_monai] - monai_hd))),
            "assd monai convention vs MONAI (float32)": float(np.max(np.abs([s.assd for s in ours_monai] - monai_mean))),
        }
        dice_mean = np.mean([s.dice for s in ours])
        print(f"\n[{kind}] mean Dice {dice_mean:.3f}, mean HD95 {np.mean([s.hd95 for s in ours]):.2f} mm")
        print(f"  ours batch_scores (dice, iou, hd95, assd), medpy convention  {ours_s:7.3f}")
        print(f"  ours batch_scores, monai convention                          {ours_monai_s:7.3f}")
        print(f"  medpy dc + jc + hd95 + assd                                  {medpy_s:7.3f}  ({medpy_s / ours_s:.1f}x ours)")
        print(f"  medpy hd95 alone                                             {medpy_hd_s:7.3f}  ({medpy_hd_s / ours_s:.1f}x ours)")
        print(f"  MONAI hd95 + symmetric asd                                   {monai_s:7.3f}  ({monai_s / ours_monai_s:.1f}x ours monai)")
        for name, value in diffs.items():
            print(f"  max |diff| {name}: {value:.1e}")


if __name__ == "__main__":
    main()
