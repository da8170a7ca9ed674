"""Training patches from preprocessed cases: which case, where to centre, what is known."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.ms_lesion.model import network_inputs
from stages.ms_lesion.volumes import centre_crop_or_pad


@dataclass(frozen=True)
class TrainingCase:
    dataset: str
    inputs: np.ndarray       # (4, x, y, z)
    labels: np.ndarray       # (4, x, y, z) float32
    known: np.ndarray        # (4,) bool: which labels the layout gives
    white_matter: np.ndarray
    brain_voxels: np.ndarray  # (n, 3)
    lesion_voxels: np.ndarray  # (m, 3): voxels of any known label


def training_case(dataset: str, arrays) -> TrainingCase:
    labels = arrays["labels"].astype(np.float32)
    known = arrays["label_known"].astype(bool)
    return TrainingCase(dataset, network_inputs(arrays["scans"], arrays["white_matter"]), labels, known,
                        arrays["white_matter"].astype(np.float32), np.argwhere(arrays["brain"] > 0),
                        np.argwhere(labels[known].max(0) > 0) if known.any() else np.zeros((0, 3), int))


def draw_patches(cases: list[TrainingCase], batch_size: int, patch: tuple[int, int, int], lesion_fraction: float,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch: datasets drawn uniformly, then a case (ours), centred on a known lesion voxel with ``lesion_fraction``."""
    datasets = sorted({c.dataset for c in cases})
    batch = {"inputs": [], "labels": [], "known": [], "white_matter": []}
    for _ in range(batch_size):
        dataset = datasets[int(rng.integers(len(datasets)))]
        pool = [c for c in cases if c.dataset == dataset]
        case = pool[int(rng.integers(len(pool)))]
        voxels = case.lesion_voxels if len(case.lesion_voxels) and rng.random() < lesion_fraction else case.brain_voxels
        centre = voxels[int(rng.integers(len(voxels)))]
        batch["inputs"].append(np.stack([centre_crop_or_pad(c, centre, patch) for c in case.inputs]))
        batch["labels"].append(np.stack([centre_crop_or_pad(c, centre, patch) for c in case.labels]))
        batch["white_matter"].append(centre_crop_or_pad(case.white_matter, centre, patch))
        batch["known"].append(case.known)
    return {key: np.stack(value) for key, value in batch.items()}
