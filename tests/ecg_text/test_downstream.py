"""Downstream metrics against scikit-learn, and the linear probe on separable data."""
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.model_selection import train_test_split

from stages.ecg_text import downstream as ds


def test_auc_matches_sklearn_with_ties_and_skips_undefined_classes():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 3)) < 0.3).astype(int)
    labels[:, 2] = 0   # no positive: not evaluable
    scores = np.round(rng.random((60, 3)) + labels * 0.3, 1)   # rounding makes ties
    expected = np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in (0, 1)])
    assert abs(ds.macro_auc(labels, scores) - expected) < 1e-12


def test_max_f1_matches_sklearn_precision_recall():
    rng = np.random.default_rng(1)
    labels = (rng.random((80, 2)) < 0.4).astype(int)
    scores = rng.random((80, 2)) + labels * 0.4
    expected = []
    for c in range(2):
        precision, recall, _ = precision_recall_curve(labels[:, c], scores[:, c])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        expected.append(f1.max())
    assert abs(ds.max_f1(labels, scores) - np.mean(expected)) < 1e-9


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(2)
    labels = (rng.random((100, 2)) < 0.4).astype(int)
    scores = rng.random((100, 2)) + labels * 0.5
    low, high = ds.bootstrap_macro_auc(labels, scores, 100, seed=0)
    assert low < ds.macro_auc(labels, scores) < high


def test_probe_subset_is_merls_split_and_the_probe_learns():
    chosen = ds.probe_subset(200, 0.1)
    expected, _ = train_test_split(np.arange(200), train_size=20, random_state=42)
    assert (chosen == np.sort(expected)).all() and len(ds.probe_subset(50, 0.01)) == 2
    rng = np.random.default_rng(3)
    labels = (rng.random((120, 2)) < 0.5).astype(int)
    features = rng.normal(size=(120, 6)) + np.repeat(labels, 3, axis=1) * 2.0
    head = ds.train_linear_probe(features[:80], labels[:80], 30, 16, 1e-2, 40, 0.1, "epoch", seed=0)
    import torch
    with torch.no_grad():
        scores = head(torch.from_numpy(features[80:].astype(np.float32))).numpy()
    assert ds.macro_auc(labels[80:], scores) > 0.95


def test_label_matrix():
    matrix = ds.label_matrix(["A;B", "", "C"], ["A", "C"])
    assert matrix.tolist() == [[1, 0], [0, 0], [0, 1]]
