"""Benchmark: vectorised official CMRxRecon2024 metrics vs a per-image scikit-image loop.

Run: ``.venv/bin/python benchmarks/cmr_metrics.py [--images 256] [--size 128]``

Checks that ``stages.cmr_recon.metrics.official_metrics`` agrees with the scorer's own
per-image loop (``evaluation-2024/Evaluation.py`` semantics: z-score, skimage PSNR/SSIM with
the reconstruction's data range, NMSE over the reconstruction's norm) to <= 1e-4, and
compares speed. Where CUDA is available the torch path is timed on the GPU as well.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stages.cmr_recon.metrics import official_metrics


def skimage_loop(gt: np.ndarray, recon: np.ndarray) -> dict[str, np.ndarray]:
    """The official scorer's loop for 4-D data (roles swapped as Main_Score2024 calls it)."""
    psnr, ssim, nmse = [], [], []
    for g, r in zip(gt, recon):
        g_z = (g - g.mean()) / (g.std() + 1e-8)
        r_z = (r - r.mean()) / (r.std() + 1e-8)
        psnr.append(peak_signal_noise_ratio(r_z, g_z, data_range=r_z.max()))
        ssim.append(structural_similarity(r_z, g_z, data_range=r_z.max()))
        nmse.append(np.linalg.norm(r_z - g_z) ** 2 / np.linalg.norm(r_z) ** 2)
    return {"psnr": np.array(psnr), "ssim": np.array(ssim), "nmse": np.array(nmse)}


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.images, args.size, args.size)
    gt = np.abs(gaussian_filter(rng.standard_normal(shape), sigma=(0, 4, 4))) * 10
    recon = gt + rng.normal(0, 0.05, shape)

    reference = skimage_loop(gt, recon)
    ours = official_metrics(gt, recon)
    max_diff = {name: float(np.abs(ours[name] - reference[name]).max()) for name in ours}
    loop_s = best_time(lambda: skimage_loop(gt, recon), args.repeats)
    vector_s = best_time(lambda: official_metrics(gt, recon), args.repeats)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    gt_t, recon_t = torch.from_numpy(gt), torch.from_numpy(recon)
    torch_cpu_s = best_time(lambda: official_metrics(gt_t, recon_t), args.repeats)
    torch_diff = max(float(np.abs(official_metrics(gt_t, recon_t)[n] - reference[n]).max()) for n in reference)

    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    print(f"batch: {args.images} images {args.size}x{args.size}, float64")
    print(f"max |official_metrics - skimage loop|: {max_diff} (torch CPU path: {torch_diff:.2e})")
    print(f"skimage loop      : {loop_s * 1e3:8.1f} ms  ({args.images / loop_s:8.0f} images/s)")
    print(f"numpy vectorised  : {vector_s * 1e3:8.1f} ms  ({args.images / vector_s:8.0f} images/s), "
          f"{loop_s / vector_s:.2f}x the loop")
    print(f"torch CPU         : {torch_cpu_s * 1e3:8.1f} ms  ({args.images / torch_cpu_s:8.0f} images/s), "
          f"{loop_s / torch_cpu_s:.2f}x the loop")
    if torch.cuda.is_available():
        gt_c, recon_c = gt_t.cuda(), recon_t.cuda()
        official_metrics(gt_c, recon_c)  # warm-up
        torch.cuda.synchronize()

        def on_gpu() -> None:
            official_metrics(gt_c, recon_c)
            torch.cuda.synchronize()

        cuda_s = best_time(on_gpu, args.repeats)
        cuda_diff = max(float(np.abs(official_metrics(gt_c, recon_c)[n] - reference[n]).max()) for n in reference)
        print(f"torch CUDA ({torch.cuda.get_device_name()}): {cuda_s * 1e3:8.1f} ms "
              f"({args.images / cuda_s:8.0f} images/s), {loop_s / cuda_s:.1f}x the loop, max diff {cuda_diff:.2e}")
    else:
        print("torch CUDA        : no CUDA device")
    worst = max(max_diff.values())
    if worst > 1e-4:
        raise SystemExit(f"FAIL: vectorised metrics differ from the skimage loop by {worst:.2e} > 1e-4")


if __name__ == "__main__":
    main()
