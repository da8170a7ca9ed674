"""The normative detector: nearest-neighbour distances, region boxes, fitting on healthy slices, saving."""
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from stages.nova.boxes import iou_matrix
from stages.nova.normative import (
    DetectorConfig,
    boxes_from_anomaly_map,
    fit_normative_model,
    load_model,
    nearest_distances,
    prepare,
    save_model,
)
from stages.nova.synthetic import generate_healthy


def test_nearest_distances_equal_brute_force():
    rng = np.random.default_rng(0)
    queries, bank = rng.normal(size=(300, 6)), rng.normal(size=(200, 6))
    np.testing.assert_allclose(nearest_distances(queries, bank, chunk=64), cdist(queries, bank).min(axis=1), atol=1e-4)


def test_boxes_from_anomaly_map_by_hand():
    anomaly = np.zeros((32, 32))
    anomaly[4:8, 10:16] = 5.0         # 4 x 6 region, peak 5
    anomaly[20:22, 20:22] = 9.0       # 2 x 2 region, peak 9 (area 4)
    anomaly[30, 30] = 50.0            # single pixel: below min_area
    boxes, scores = boxes_from_anomaly_map(anomaly, threshold=1.0, min_area=4, max_boxes=5, out_shape=(64, 128))
    # best first; scaled by (64/32 rows, 128/32 columns)
    np.testing.assert_allclose(boxes, [[80, 40, 8, 4], [40, 8, 24, 8]])
    np.testing.assert_allclose(scores, [9.0, 5.0])
    boxes, _ = boxes_from_anomaly_map(anomaly, threshold=1.0, min_area=4, max_boxes=1, out_shape=(32, 32))
    assert len(boxes) == 1
    assert boxes_from_anomaly_map(anomaly, 100.0, 1, 5, (32, 32))[0].shape == (0, 4)


@pytest.fixture(scope="module")
def fitted():
    slices = generate_healthy(16, 64, seed=1)
    config = DetectorConfig(size=64, bank_size=1500, depth_weight=0.5, smoothing_sigma=1.5)
    prepared = [(*prepare(image / 255.0, config.size), sequence, plane) for _, image, plane, sequence in slices]
    model = fit_normative_model(prepared[:12], prepared[12:], config, quantile=0.99, seed=0)
    return model, slices


def test_fitted_model_finds_a_painted_lesion(fitted):
    model, slices = fitted
    image = slices[-1][1] / 255.0
    prepared, mask = prepare(image, 64)
    rows, cols = np.nonzero(mask)
    centre = (int(np.median(rows)), int(np.median(cols)))
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 25
    lesioned = image.copy()
    lesioned[disc] = min(1.0, np.percentile(image[mask], 99) * 1.8)
    prepared, mask = prepare(lesioned, 64)
    sequence, plane = model.classify(prepared, mask)
    assert sequence in model.banks and plane in {"axial", "coronal", "sagittal"}
    anomaly = model.anomaly_map(prepared, mask, sequence)
    assert anomaly[disc].mean() > 3 * max(anomaly[mask & ~disc].mean(), 1e-6)
    boxes, scores = boxes_from_anomaly_map(anomaly, model.threshold, 4, 5, (64, 64))
    truth = np.array([[xx[disc].min(), yy[disc].min(), np.ptp(xx[disc]) + 1, np.ptp(yy[disc]) + 1]])
    assert len(boxes) and iou_matrix(boxes[:1], truth)[0, 0] > 0.3


def test_model_round_trips_through_a_deterministic_npz(fitted, tmp_path):
    model, _ = fitted
    save_model(tmp_path / "a.npz", model)
    save_model(tmp_path / "b.npz", model)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = load_model(tmp_path / "a.npz")
    assert loaded.config == model.config and loaded.threshold == pytest.approx(model.threshold)
    assert loaded.banks.keys() == model.banks.keys()
    for name, stats in model.distance_stats.items():
        assert loaded.distance_stats[name] == pytest.approx(stats)
    image, mask = prepare(fitted[1][0][1] / 255.0, 64)
    np.testing.assert_allclose(loaded.anomaly_map(image, mask, "T1"), model.anomaly_map(image, mask, "T1"))
