"""Benchmark: heart_mesh's KD-tree mesh distances at the official full mesh size (22,043 vertices).

Run: ``.venv/bin/python benchmarks/heart_mesh_metrics.py [--vertices 22043] [--frames 50]``

Times Hausdorff, ASSD and Chamfer (``stages.heart_mesh.metrics``) per frame pair and for a 50-frame
sequence, and checks them once against scipy's ``cdist`` on a 2,000-point subset.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial.distance import cdist

from stages.heart_mesh.metrics import assd, chamfer, hausdorff, sequence_distances


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vertices", type=int, default=22043)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(args.frames, args.vertices, 3)) * 30
    prediction = truth + rng.normal(size=truth.shape)
    a, b = truth[0, :2000], prediction[0, :2000]
    d = cdist(a, b)
    assert np.isclose(hausdorff(a, b), max(d.min(1).max(), d.min(0).max()))
    assert np.isclose(assd(a, b), (d.min(1).sum() + d.min(0).sum()) / 4000)
    assert np.isclose(chamfer(a, b), 0.5 * ((d.min(1) ** 2).mean() + (d.min(0) ** 2).mean()))
    started = time.perf_counter()
    for function in (hausdorff, assd, chamfer):
        function(truth[0], prediction[0])
    frame = (time.perf_counter() - started) / 3
    started = time.perf_counter()
    sequence_distances(truth, prediction)
    sequence = time.perf_counter() - started
    print(f"{args.vertices} vertices: {frame * 1000:.0f} ms per metric per frame pair; "
          f"{args.frames}-frame sequence, all three metrics: {sequence:.1f} s "
          f"(an all-pairs float64 matrix would be {args.vertices**2 * 8 / 1e9:.1f} GB per frame)")


if __name__ == "__main__":
    main()
