"""The 10-value condition of the official code: age-group one-hot (6), sex one-hot (2), weight, height.

From MengyunQ/MeshHeart ``util/utils.py`` (``age_transform``, ``condition_normal``) and
``data/dataloader.py``: weight and height enter rounded, unscaled (the condition MLP's PixelNorm
normalises the vector as a whole).
"""
from __future__ import annotations

import math

import numpy as np

AGE_GROUPS = 6
SEXES = 2
CONDITION_SIZE = AGE_GROUPS + SEXES + 2


def age_group(age: float) -> int:
    """Official binning: under 55 is group 0, else ``min((age - 50) // 5, 5)``."""
    if age < 55:
        return 0
    return min(math.floor((age - 50) // 5), AGE_GROUPS - 1)


def condition_vector(age: float, sex: float, weight: float, height: float) -> np.ndarray:
    """``[one_hot(age_group), one_hot(sex), round(weight), round(height)]`` as float32."""
    if int(sex) not in (0, 1) or float(sex) != int(sex):
        raise ValueError(f"sex must be 0 or 1, got {sex}")
    vector = np.zeros(CONDITION_SIZE, dtype=np.float32)
    vector[age_group(age)] = 1.0
    vector[AGE_GROUPS + int(sex)] = 1.0
    # torch.round rounds half to even, as np.round does
    vector[-2:] = np.round(np.array([weight, height], dtype=np.float32))
    return vector


def condition_matrix(ages, sexes, weights, heights) -> np.ndarray:
    """Stacked :func:`condition_vector` of each subject, ``(S, 10)``."""
    return np.stack([condition_vector(a, s, w, h) for a, s, w, h in zip(ages, sexes, weights, heights)])
