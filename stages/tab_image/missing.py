"""The four missing-data protocols of TIP (``data/create_missing_mask.ipynb`` in siyi-wind/TIP).

True marks a missing cell. The draws use numpy's legacy global-seed generator exactly as the
notebook does (``np.random.seed(seed); np.random.choice(...)``), so given the same table shape and
seed the masks are the official ones.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

Strategy = Literal["random_values", "random_features", "most_important", "least_important"]
STRATEGIES: tuple[Strategy, ...] = ("random_values", "random_features", "most_important", "least_important")
# The strategy names in the official mask file names.
FILE_NAMES: dict[str, str] = {"random_values": "value", "random_features": "feature",
                              "most_important": "MI", "least_important": "LI"}


def importance_order(importances: np.ndarray, most_first: bool) -> np.ndarray:
    """Column indices by importance (most or least important first); ties keep column order."""
    values = np.asarray(importances, dtype=float)
    return np.argsort(-values if most_first else values, kind="stable")


def make_missing_mask(n_rows: int, n_cols: int, rate: float, strategy: Strategy,
                      importances: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Boolean ``(n_rows, n_cols)`` mask, True = missing.

    ``random_values`` masks ``int(n_rows * n_cols * rate)`` cells drawn without replacement;
    ``random_features`` masks ``int(n_cols * rate)`` whole columns; ``most_important`` /
    ``least_important`` mask the ``int(n_cols * rate)`` columns with the highest / lowest
    ``importances`` (RandomForest importances fitted on the training split).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"missing rate must be in [0, 1], got {rate}")
    mask = np.zeros((n_rows, n_cols), dtype=bool)
    generator = np.random.RandomState(seed)  # same stream as np.random.seed(seed) + np.random.choice
    if strategy == "random_values":
        flat = mask.reshape(-1)
        flat[generator.choice(n_rows * n_cols, size=int(n_rows * n_cols * rate), replace=False)] = True
        return flat.reshape(n_rows, n_cols)
    if strategy == "random_features":
        mask[:, generator.choice(n_cols, size=int(n_cols * rate), replace=False)] = True
        return mask
    if strategy in ("most_important", "least_important"):
        if importances is None or len(importances) != n_cols:
            raise ValueError(f"{strategy} needs one importance per column ({n_cols})")
        mask[:, importance_order(importances, strategy == "most_important")[: int(n_cols * rate)]] = True
        return mask
    raise ValueError(f"unknown missing strategy {strategy!r}; known: {list(STRATEGIES)}")


def random_forest_importances(table: np.ndarray, labels: np.ndarray, random_state: int) -> np.ndarray:
    """Impurity importances of a RandomForestClassifier (sklearn defaults, as the notebook) fitted on train."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(random_state=random_state, n_jobs=1)
    forest.fit(table, labels)
    return forest.feature_importances_


def mask_file_name(table_file: str, target: str, strategy: Strategy, rate: float) -> str:
    """``<table>_<target>_<strategy>_<rate>.npy`` as the official loaders look it up."""
    stem = table_file[:-4] if table_file.endswith(".csv") else table_file
    return f"{stem}_{target}_{FILE_NAMES[strategy]}_{rate}.npy"
