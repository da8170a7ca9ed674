"""Downstream evaluation numerics: macro ROC-AUC (rank form), max-F1, bootstrap, zero-shot scores, linear probe."""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn


def label_matrix(codes: list[str], classes: list[str]) -> np.ndarray:
    """(records, classes) 0/1 from ';'-joined code strings."""
    index = {c: i for i, c in enumerate(classes)}
    labels = np.zeros((len(codes), len(classes)), dtype=np.int8)
    for row, text in enumerate(codes):
        for code in filter(None, str(text).split(";")):
            if code in index:
                labels[row, index[code]] = 1
    return labels


def evaluable(labels: np.ndarray) -> np.ndarray:
    """Classes with at least one positive and one negative (AUC defined)."""
    positives = labels.sum(axis=0)
    return (positives > 0) & (positives < labels.shape[0])


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count half); equals sklearn's roc_auc_score."""
    ranks = rankdata(scores)
    positives = labels.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean ROC-AUC over the classes where it is defined (NaN when none is)."""
    columns = np.flatnonzero(evaluable(labels))
    if columns.size == 0:
        return float("nan")
    return float(np.mean([binary_auc(labels[:, c], scores[:, c]) for c in columns]))


def max_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Macro over classes of the best F1 over all thresholds (MERL reports max-F1)."""
    values = []
    for c in np.flatnonzero(evaluable(labels)):
        order = np.argsort(-scores[:, c], kind="stable")
        truth = labels[order, c].astype(float)
        true_positives = np.cumsum(truth)
        predicted = np.arange(1, truth.size + 1)
        f1 = 2 * true_positives / (predicted + truth.sum())
        values.append(float(f1.max()))
    return float(np.mean(values)) if values else float("nan")


def bootstrap_macro_auc(labels: np.ndarray, scores: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the macro AUC over record resamples (resamples leaving no class evaluable are redrawn)."""
    rng = np.random.default_rng(seed)
    values = []
    while len(values) < samples:
        rows = rng.integers(0, labels.shape[0], labels.shape[0])
        value = macro_auc(labels[rows], scores[rows])
        if np.isfinite(value):
            values.append(value)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def zero_shot_scores(ecg_embeddings: torch.Tensor, prompt_embeddings: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each (L2-normalised) ECG with each class prompt; MERL uses it without softmax."""
    return (ecg_embeddings @ prompt_embeddings.T).numpy()


def train_linear_probe(features: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int, learning_rate: float,
                       milestone: int, gamma: float, schedule_step: str, seed: int) -> nn.Linear:
    """MERL's linear probe: one linear layer, BCE with logits, Adam, MultiStepLR([milestone], gamma)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(features.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    head = nn.Linear(x.shape[1], y.shape[1])
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=[milestone], gamma=gamma)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            batch = order[start:start + batch_size]
            optimiser.zero_grad()
            loss_fn(head(x[batch]), y[batch]).backward()
            optimiser.step()
            if schedule_step == "batch":
                schedule.step()
        if schedule_step == "epoch":
            schedule.step()
    return head


def probe_subset(count: int, fraction: float, seed: int = 42) -> np.ndarray:
    """Indices of the training fraction, by sklearn's train_test_split (random_state 42, as MERL); at least 2 (ours)."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(count)
    if fraction >= 1.0:
        return indices
    size = max(2, int(round(fraction * count)))
    chosen, _ = train_test_split(indices, train_size=size, random_state=seed)
    return np.sort(chosen)
