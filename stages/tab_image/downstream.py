"""Downstream pieces: imputation for the baselines, nested label subsets, linear heads, fine-tuning, metrics."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stages.tab_image.augment import augment_images, corrupt


def impute(table: np.ndarray, missing: np.ndarray, reference: np.ndarray, reference_missing: np.ndarray,
           field_lengths: np.ndarray) -> np.ndarray:
    """Missing cells filled with the observed training mean (continuous) or mode (categorical); ours.

    A column with no observed training cell falls back to 0 (the z-scored mean; category 0).
    """
    out = table.copy()
    for column, length in enumerate(field_lengths):
        observed = reference[~reference_missing[:, column], column]
        if observed.size == 0:
            fill = 0.0
        elif length > 1:
            fill = float(np.bincount(observed.astype(int), minlength=int(length)).argmax())
        else:
            fill = float(observed.mean())
        out[missing[:, column], column] = fill
    return out


def nested_subsets(labels: np.ndarray, fractions: list[float], seed: int) -> dict[float, np.ndarray]:
    """Nested training subsets (1% inside 10% inside 100%), each with at least one sample per class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    first_of_class = [order[labels[order] == c][0] for c in np.unique(labels)]
    ranked = np.concatenate([first_of_class, [i for i in order if i not in set(first_of_class)]]).astype(int)
    return {f: np.sort(ranked[:max(int(round(f * len(labels))), len(first_of_class))]) for f in fractions}


def score(metric: str, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Accuracy, or AUC of the positive class (binary tasks), as the official evaluators report."""
    if metric == "acc":
        return float((probabilities.argmax(1) == labels).mean())
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, probabilities[:, 1]))


def train_linear_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int,
                      metric: str, seed: int, epochs: int, learning_rate: float, patience: int, min_delta: float) -> nn.Module:
    """A Linear head on frozen features (standardised with the training statistics, ours), Adam, early stopping on val."""
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    head = nn.Sequential(Standardise(mean, std), nn.Linear(train_x.shape[1], classes))
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate)
    x, y = torch.from_numpy(train_x).float(), torch.from_numpy(train_y).long()
    vx = torch.from_numpy(val_x).float()
    generator = torch.Generator().manual_seed(seed)
    best, best_state, waited = -np.inf, copy.deepcopy(head.state_dict()), 0
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(32):
            loss = F.cross_entropy(head(x[index]), y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            value = score(metric, val_y, F.softmax(head(vx), 1).numpy())
        if value > best + min_delta:
            best, best_state, waited = value, copy.deepcopy(head.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    head.load_state_dict(best_state)
    return head.eval()


class Standardise(nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def predict(head: nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return F.softmax(head(torch.from_numpy(features).float()), 1).numpy()


class Classifier(nn.Module):
    """An encoder's multimodal features and ``Linear(features, classes)``; trained end to end."""

    def __init__(self, encoder: nn.Module, features: int, classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(features, classes)

    def forward(self, images: torch.Tensor, table: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.features(images, table, masked))


def fine_tune(model: nn.Module, data: dict, metric: str, seed: int, epochs: int, learning_rate: float, patience: int,
              min_delta: float, augmentation_rate: float, corruption_rate: float, crop_scale: float,
              batch_size: int, device) -> nn.Module:
    """Adam (weight decay 0), CE, early stopping on the validation metric; images augmented with p
    ``augmentation_rate`` and then the table corrupted by ``corruption_rate`` (official)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=0)
    images, table, labels = data["train"]
    best, best_state, waited = -np.inf, copy.deepcopy(model.state_dict()), 0
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(labels), generator=generator).split(batch_size):
            if len(index) < 2:
                continue
            x = images[index]
            rows = table[index.numpy()]
            augment = torch.rand(len(index), generator=generator) < augmentation_rate
            x = torch.where(augment[:, None, None, None], augment_images(x, crop_scale, generator), x)
            corrupted = np.where(augment.numpy()[:, None], corrupt(rows, table, corruption_rate, rng), rows)
            t = torch.from_numpy(corrupted).float().to(device)
            loss = F.cross_entropy(model(x.to(device), t, torch.zeros_like(t, dtype=torch.bool)),
                                   torch.from_numpy(labels[index.numpy()]).long().to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        value = score(metric, data["val"][2], classify(model, *data["val"][:2], None, device))
        if value > best + min_delta:
            best, best_state, waited = value, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    return model.eval()


def classify(model: nn.Module, images: torch.Tensor, table: np.ndarray, missing: np.ndarray | None, device,
             batch_size: int = 256) -> np.ndarray:
    model.eval()
    outputs = []
    with torch.no_grad():
        for begin in range(0, len(table), batch_size):
            t = torch.from_numpy(table[begin:begin + batch_size]).float().to(device)
            m = torch.zeros_like(t, dtype=torch.bool) if missing is None else torch.from_numpy(missing[begin:begin + batch_size]).to(device)
            outputs.append(F.softmax(model(images[begin:begin + batch_size].to(device), t, m), 1).cpu().numpy())
    return np.concatenate(outputs)
