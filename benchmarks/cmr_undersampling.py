"""Benchmark: undersampling (mask multiply) + zero-filled reconstruction throughput.

Run: ``.venv/bin/python benchmarks/cmr_undersampling.py [--frames 24] [--coils 10]``

For each matrix size, a block of 2-D multi-coil frames ``(frames, coils, ny, nx)`` complex64
is multiplied by a ktGaussian mask and reconstructed zero-filled (centred orthonormal inverse
FFT + RSS over coils): numpy (``classical.zero_filled``), torch on CPU, and torch on CUDA
where a GPU is present. Reports 2-D frames per second (one frame = all coils of one image).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stages.cmr_recon.classical import zero_filled
from stages.cmr_recon.masks import make_mask
from stages.cmr_recon.model import ifft2c_torch, rss_torch

SIZES = ((64, 64), (128, 128), (200, 200), (200, 400))  # (ny, nx)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_pipeline(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return zero_filled(kspace * mask[:, None])


def torch_pipeline(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return rss_torch(ifft2c_torch(kspace * mask[:, None]), coil_dim=-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--coils", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.frames} frames x {args.coils} coils per block, complex64, ktGaussian R=8; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'ny x nx':>10} | {'numpy fr/s':>11} | {'torch CPU fr/s':>14} | {'torch CUDA fr/s':>15}")
    for ny, nx in SIZES:
        shape = (args.frames, args.coils, ny, nx)
        kspace = (rng.standard_normal(shape, dtype=np.float32)
                  + 1j * rng.standard_normal(shape, dtype=np.float32)).astype(np.complex64)
        mask = make_mask("ktGaussian", nx=nx, ny=ny, nt=args.frames, acceleration=8, seed=1)
        numpy_s = best_time(lambda k=kspace, m=mask: numpy_pipeline(k, m), args.repeats)
        kspace_t, mask_t = torch.from_numpy(kspace), torch.from_numpy(mask)
        reference = numpy_pipeline(kspace, mask)
        torch_result = torch_pipeline(kspace_t, mask_t).numpy()
        assert np.allclose(torch_result, reference, rtol=1e-4, atol=1e-5), "torch and numpy disagree"
        torch_s = best_time(lambda k=kspace_t, m=mask_t: torch_pipeline(k, m), args.repeats)
        cuda_column = "no CUDA"
        if torch.cuda.is_available():
            kspace_c, mask_c = kspace_t.cuda(), mask_t.cuda()
            torch_pipeline(kspace_c, mask_c)
            torch.cuda.synchronize()

            def on_gpu(k=kspace_c, m=mask_c) -> None:
                torch_pipeline(k, m)
                torch.cuda.synchronize()

            cuda_column = f"{args.frames / best_time(on_gpu, args.repeats):15.0f}"
        print(f"{ny:>4} x {nx:<4} | {args.frames / numpy_s:11.1f} | {args.frames / torch_s:14.1f} | {cuda_column:>15}")


if __name__ == "__main__":
    main()
