"""A synthetic paired image + table population with the structure TIP's claims are about (ours).

Each sample has three binary latent factors: ``shared`` (shows in the image as the blob's colour and
in the table as a categorical and a continuous column), ``image_only`` (the blob's side of the image)
and ``table_only`` (a categorical and a continuous column). The many-class label combines all three
(8 classes, accuracy), the binary label is their majority (AUC), so neither modality alone is
enough. The blob's radius and brightness also appear as continuous columns: columns that correlate
with image content, so an image-conditioned reconstruction can recover them when they are masked.
Noise columns carry nothing. Categorical columns come first, as the official tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Column layout (ours): 3 categorical then 6 continuous.
FIELD_LENGTHS = np.array([2, 2, 4, 1, 1, 1, 1, 1, 1])
COLUMN_NAMES = ["shared_code", "table_code", "noise_code", "blob_radius", "table_level", "shared_level",
                "blob_brightness", "noise_a", "noise_b"]


@dataclass(frozen=True)
class Population:
    images: np.ndarray        # (N, H, W, C) in [0, 1]
    table: np.ndarray         # (N, columns), categorical codes as floats
    factors: np.ndarray       # (N, 3): shared, image_only, table_only
    many_class: np.ndarray    # (N,) in 0..7
    binary: np.ndarray        # (N,) in {0, 1}


def flip(values: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(values.shape) < rate, 1 - values, values)


def draw_population(n: int, image_size: int, channels: int, rng: np.random.Generator,
                    code_noise: float = 0.1, image_noise: float = 0.08) -> Population:
    factors = rng.integers(0, 2, size=(n, 3))
    shared, image_only, table_only = factors.T
    radius = rng.uniform(0.12, 0.3, n) * image_size
    brightness = rng.uniform(0.5, 1.0, n)
    yy, xx = np.mgrid[:image_size, :image_size] + 0.5
    centre_x = np.where(image_only == 1, 0.7, 0.3) * image_size + rng.normal(0, 0.04 * image_size, n)
    centre_y = rng.uniform(0.35, 0.65, n) * image_size
    blob = ((yy[None] - centre_y[:, None, None]) ** 2 + (xx[None] - centre_x[:, None, None]) ** 2) <= radius[:, None, None] ** 2
    images = rng.normal(0.15, image_noise, size=(n, image_size, image_size, channels))
    # The shared factor picks the blob's colour: channel 0 or the last channel dominates.
    for c in range(channels):
        weight = np.where(shared == 1, c / max(channels - 1, 1), 1 - c / max(channels - 1, 1)) if channels > 1 else np.ones(n)
        images[..., c] += blob * (brightness * (0.3 + 0.7 * weight))[:, None, None]
    images = np.clip(images, 0, 1)

    table = np.column_stack([
        flip(shared, code_noise, rng),
        flip(table_only, code_noise, rng),
        rng.integers(0, 4, n),
        (radius / image_size - 0.21) / 0.052 + rng.normal(0, 0.3, n),
        table_only * 2.0 - 1.0 + rng.normal(0, 0.7, n),
        shared * 2.0 - 1.0 + rng.normal(0, 0.9, n),
        (brightness - 0.75) / 0.144 + rng.normal(0, 0.3, n),
        rng.normal(0, 1, n),
        rng.normal(0, 1, n),
    ]).astype(float)
    many_class = shared * 4 + image_only * 2 + table_only
    binary = (factors.sum(axis=1) >= 2).astype(int)
    return Population(images, table, factors, many_class, binary)
