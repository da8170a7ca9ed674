"""The normative anomaly detector, fitted only on healthy slices.

A pixel is described by its neighbourhood at several scales (Gaussian-smoothed intensity at
sigma 1, 2, 4 and 8 pixels, local standard deviation, and depth below the head's outline), on a
slice resized to ``size x size`` and intensity-normalised by its own foreground. A memory bank
of such descriptors is sampled from healthy slices, one bank per sequence (PatchCore's idea,
with hand-made features instead of a pretrained network). A pixel's anomaly is its distance
to the nearest healthy descriptor, turned into a z-score by the distances of held-out healthy
pixels to the same bank; the map is smoothed, thresholded at a z calibrated on held-out
healthy slices (a high quantile), and each connected region becomes a box scored by its peak.

The sequence of a test slice is not given to a model, so a nearest-neighbour classifier on
the slice's intensity-histogram shape, fitted on the healthy slices' labels, picks the bank
(and names the sequence and plane in the structured caption).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field
from scipy import ndimage

from stages.common.io import write_npz
from stages.common.params import StrictModel

SCALES = (1.0, 2.0, 4.0, 8.0)
HISTOGRAM_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


MODEL_FILE = "normative.npz"


class DetectorConfig(StrictModel):
    """What the detector is built with; ``nova.train_normative`` extends it (values in params.yaml only)."""

    size: int = Field(ge=16)             # slices are resized to size x size
    bank_size: int = Field(ge=1)         # healthy descriptors kept per sequence
    depth_weight: float = Field(ge=0)
    smoothing_sigma: float = Field(ge=0)

    @classmethod
    def of(cls, params: StrictModel) -> DetectorConfig:
        """The detector's own fields of a params model that extends this one."""
        return cls.model_validate(params.model_dump(include=set(cls.model_fields)))


# --------------------------------------------------------------------------- preprocessing
def foreground_mask(image: np.ndarray, fraction: float = 0.12) -> np.ndarray:
    """The head/brain: above ``fraction`` of the robust maximum, holes filled, largest component."""
    level = fraction * max(float(np.percentile(image, 99.5)), 1e-6)
    mask = ndimage.binary_opening(image > level, iterations=1)
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask)
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)


def prepare(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(intensity-normalised ``size x size`` slice, its foreground mask).

    Intensities are divided by the median inside the foreground, so contrast and bias
    differences between acquisitions matter less.
    """
    image = np.asarray(image, dtype=np.float32)
    resized = ndimage.zoom(image, (size / image.shape[0], size / image.shape[1]), order=1)[:size, :size]
    mask = foreground_mask(resized)
    scale = float(np.median(resized[mask])) if mask.any() else float(resized.max() or 1.0)
    return np.clip(resized / max(scale, 1e-6), 0.0, 4.0).astype(np.float32), mask


def descriptors(image: np.ndarray, mask: np.ndarray, depth_weight: float) -> np.ndarray:
    """``(H, W, 6)`` per-pixel descriptors: smoothed intensity at ``SCALES``, local std, depth."""
    inside = mask.astype(np.float32)
    weight = {s: np.maximum(ndimage.gaussian_filter(inside, s), 1e-3) for s in SCALES}
    # Normalised convolution: smoothing does not pull values towards the black background.
    smoothed = [ndimage.gaussian_filter(image * inside, s) / weight[s] for s in SCALES]
    second = ndimage.gaussian_filter(image * image * inside, 2.0) / weight[2.0]
    local_std = np.sqrt(np.clip(second - smoothed[1] ** 2, 0, None))
    depth = np.minimum(ndimage.distance_transform_edt(mask) / 12.0, 1.0) * depth_weight
    return np.stack([*smoothed, local_std, depth], axis=-1).astype(np.float32)


def histogram_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shape of the foreground intensity histogram (quantiles over the median) and edge contrast:
    what tells T1, T2, FLAIR and DWI apart."""
    values = image[mask] if mask.any() else image.ravel()
    quantiles = np.quantile(values, HISTOGRAM_QUANTILES) / max(float(np.median(values)), 1e-6)
    gradient = np.hypot(*np.gradient(ndimage.gaussian_filter(image, 1.0)))
    edge = float(np.mean(gradient[mask])) if mask.any() else 0.0
    depth = ndimage.distance_transform_edt(mask)
    shallow, deep = mask & (depth <= 5), depth > 10
    shallow_level = float(np.median(image[shallow])) if shallow.any() else 0.0
    deep_level = float(np.median(image[deep])) if deep.any() else shallow_level
    # Deep white matter against the cortical rim: brighter on T1, darker on T2 and FLAIR.
    return np.array([*quantiles, edge * 10.0, shallow_level, 3.0 * (deep_level - shallow_level)], dtype=np.float64)


def shape_features(mask: np.ndarray) -> np.ndarray:
    """Outline of the head: aspect ratio, fill of its bounding box, left-right symmetry,
    top-bottom balance (what tells axial, coronal and sagittal apart)."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.zeros(4)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    symmetry = float((box & box[:, ::-1]).sum() / max(box.sum(), 1))
    balance = float(box[: box.shape[0] // 2].sum() / max(box.sum(), 1))
    return np.array([height / width, box.mean(), symmetry, balance])


# --------------------------------------------------------------------------- the model
@dataclass
class NormativeModel:
    """Everything the detector and the structured captioner need, fitted on healthy slices."""

    config: DetectorConfig
    scale: np.ndarray                    # (6,) feature scale
    banks: dict[str, np.ndarray]         # sequence -> (n, 6) scaled healthy descriptors
    distance_stats: dict[str, tuple[float, float]]  # sequence -> (mean, std) of healthy distances
    threshold: float                     # z-score threshold of the smoothed map
    classifier_features: np.ndarray      # (N, F) healthy slices' histogram + shape features
    classifier_scale: np.ndarray         # (F,)
    sequences: np.ndarray                # (N,) labels
    planes: np.ndarray                   # (N,) labels

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"scale": self.scale, "threshold": np.array(self.threshold),
                  "classifier_features": self.classifier_features, "classifier_scale": self.classifier_scale,
                  "sequences": self.sequences.astype(str), "planes": self.planes.astype(str),
                  "config": np.array(list(self.config.model_dump().values()), dtype=np.float64)}
        for name, bank in self.banks.items():
            arrays[f"bank/{name}"] = bank
            arrays[f"stats/{name}"] = np.array(self.distance_stats[name])
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> NormativeModel:
        size, bank_size, depth_weight, smoothing = arrays["config"].tolist()
        config = DetectorConfig(size=int(size), bank_size=int(bank_size), depth_weight=depth_weight, smoothing_sigma=smoothing)
        banks = {k.split("/", 1)[1]: arrays[k] for k in arrays if k.startswith("bank/")}
        stats = {k.split("/", 1)[1]: tuple(arrays[k].tolist()) for k in arrays if k.startswith("stats/")}
        return cls(config, arrays["scale"], banks, stats, float(arrays["threshold"]), arrays["classifier_features"],
                   arrays["classifier_scale"], arrays["sequences"], arrays["planes"])

    def classify(self, image: np.ndarray, mask: np.ndarray, k: int = 3) -> tuple[str, str]:
        """(sequence, plane) by k-nearest-neighbour votes among the healthy slices: the sequence
        from the histogram features, the plane from the outline's shape features."""
        features = np.concatenate([histogram_features(image, mask), shape_features(mask)]) / self.classifier_scale
        split = len(features) - 4
        votes = []
        for columns, labels in ((slice(0, split), self.sequences), (slice(split, None), self.planes)):
            distances = np.linalg.norm(self.classifier_features[:, columns] - features[columns], axis=1)
            votes.append(_vote(labels[np.argsort(distances, kind="stable")[:k]]))
        return votes[0], votes[1]

    def anomaly_map(self, image: np.ndarray, mask: np.ndarray, sequence: str) -> np.ndarray:
        """Smoothed z-scored distance to the nearest healthy descriptor, inside the foreground."""
        bank_name = sequence if sequence in self.banks else next(iter(self.banks))
        features = descriptors(image, mask, self.config.depth_weight) / self.scale
        distances = np.zeros(mask.shape, dtype=np.float32)
        inside = np.nonzero(mask)
        if len(inside[0]):
            distances[inside] = nearest_distances(features[inside], self.banks[bank_name])
        mean, std = self.distance_stats[bank_name]
        z = np.where(mask, (distances - mean) / max(std, 1e-6), 0.0)
        core = ndimage.binary_erosion(mask, iterations=1)
        return ndimage.gaussian_filter(np.clip(z, 0, None) * core, self.config.smoothing_sigma).astype(np.float32)


def _vote(labels: np.ndarray) -> str:
    values, counts = np.unique(labels, return_counts=True)
    return str(values[int(np.argmax(counts))])


def nearest_distances(queries: np.ndarray, bank: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance from each query row to its nearest bank row (chunked matrix products)."""
    bank = bank.astype(np.float32)
    bank_norms = (bank * bank).sum(axis=1)
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk].astype(np.float32)
        squared = (q * q).sum(axis=1)[:, None] - 2.0 * q @ bank.T + bank_norms[None, :]
        out[start:start + chunk] = np.sqrt(np.clip(squared.min(axis=1), 0, None))
    return out


def fit_normative_model(train: list[tuple[np.ndarray, np.ndarray, str, str]],
                        calibration: list[tuple[np.ndarray, np.ndarray, str, str]],
                        config: DetectorConfig, quantile: float, seed: int) -> NormativeModel:
    """Fit banks, distance statistics, threshold and classifiers.

    ``train`` and ``calibration``: disjoint lists of healthy (prepared image, mask, sequence, plane).
    The threshold is the ``quantile`` of the smoothed z-maps of the calibration slices.
    """
    rng = np.random.default_rng(seed)
    features = [descriptors(image, mask, config.depth_weight)[mask] for image, mask, _, _ in train]
    everything = np.concatenate(features)
    scale = np.maximum(everything.std(axis=0), 1e-3)
    scale[-1] = 1.0  # depth keeps its own weight
    banks: dict[str, np.ndarray] = {}
    for sequence in sorted({s for _, _, s, _ in train}):
        pooled = np.concatenate([features[i] for i, (_, _, s, _) in enumerate(train) if s == sequence]) / scale
        keep = rng.choice(len(pooled), size=min(config.bank_size, len(pooled)), replace=False)
        banks[sequence] = pooled[np.sort(keep)].astype(np.float32)
    stats: dict[str, tuple[float, float]] = {}
    for sequence, bank in banks.items():
        held = [descriptors(image, mask, config.depth_weight)[mask] / scale for image, mask, s, _ in calibration if s == sequence]
        if not held:
            held = [descriptors(image, mask, config.depth_weight)[mask] / scale for image, mask, s, _ in train if s == sequence]
        distances = nearest_distances(np.concatenate(held), bank)
        stats[sequence] = (float(distances.mean()), float(distances.std() + 1e-6))
    classifier = np.array([np.concatenate([histogram_features(image, mask), shape_features(mask)]) for image, mask, _, _ in train])
    classifier_scale = np.maximum(classifier.std(axis=0), 1e-6)
    model = NormativeModel(config, scale.astype(np.float32), banks, stats, 0.0, classifier / classifier_scale, classifier_scale,
                           np.array([s for _, _, s, _ in train]), np.array([p for _, _, _, p in train]))
    maps = [model.anomaly_map(image, mask, model.classify(image, mask)[0]) for image, mask, _, _ in calibration]
    values = np.concatenate([m[mask] for m, (_, mask, _, _) in zip(maps, calibration, strict=True)]) if maps else np.zeros(1)
    model.threshold = float(np.quantile(values, quantile))
    return model


def boxes_from_anomaly_map(anomaly: np.ndarray, threshold: float, min_area: int, max_boxes: int,
                           out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions of ``anomaly > threshold`` -> (``[x, y, w, h]`` in ``out_shape`` pixels, scores).

    A region's score is its peak value; the ``max_boxes`` best regions are kept, best first.
    """
    labels, _ = ndimage.label(anomaly > threshold, structure=np.ones((3, 3)))
    found = []
    sy, sx = out_shape[0] / anomaly.shape[0], out_shape[1] / anomaly.shape[1]
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        inside = labels[region] == index
        if int(inside.sum()) < min_area:
            continue
        rows, cols = region
        found.append((float(anomaly[region][inside].max()),
                      [cols.start * sx, rows.start * sy, (cols.stop - cols.start) * sx, (rows.stop - rows.start) * sy]))
    found.sort(key=lambda item: -item[0])
    found = found[:max_boxes]
    return np.array([box for _, box in found], dtype=np.float64).reshape(-1, 4), np.array([s for s, _ in found])


def save_model(path: Path, model: NormativeModel) -> Path:
    """The fitted detector as an ``.npz`` with fixed zip times (equal models give equal bytes)."""
    return write_npz(path, model.to_arrays())


def load_model(path: Path) -> NormativeModel:
    """The detector :func:`save_model` wrote."""
    with np.load(path, allow_pickle=False) as arrays:
        return NormativeModel.from_arrays({k: arrays[k] for k in arrays.files})
