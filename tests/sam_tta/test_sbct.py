"""SBCT against an independent evaluation of the Bezier curve (de Casteljau) and the official initialisation."""
import numpy as np
import torch

from stages.sam_tta.curves import BezierCurves, ControlPointCNN, apply_curves
from stages.sam_tta.sbct import INITIAL_RAW_POINTS, bezier_transform


def de_casteljau(points: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cubic Bezier height at t by repeated linear interpolation (no Bernstein polynomials)."""
    level = [np.full_like(t, p) for p in points]
    while len(level) > 1:
        level = [(1 - t) * a + t * b for a, b in zip(level[:-1], level[1:])]
    return level[0]


def test_bezier_transform_matches_de_casteljau_per_channel():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (7, 5))
    raw = rng.normal(0, 2, (3, 4))
    out = bezier_transform(image, raw)
    assert out.shape == (3, 7, 5)
    for k in range(3):
        expected = np.clip(de_casteljau(1 / (1 + np.exp(-raw[k])), image), 0, 1)
        np.testing.assert_allclose(out[k], expected, rtol=1e-12)


def test_official_initialisation_is_not_the_identity():
    ends = bezier_transform(np.array([[0.0, 1.0]]), INITIAL_RAW_POINTS)
    np.testing.assert_allclose(ends[:, 0, 0], 0.5)                       # sigmoid(0)
    np.testing.assert_allclose(ends[:, 0, 1], 1 / (1 + np.exp(-1.0)))    # sigmoid(1) = 0.731
    middle = bezier_transform(np.array([[0.5]]), INITIAL_RAW_POINTS)[0, 0, 0]
    first = 1 / (1 + np.exp(-INITIAL_RAW_POINTS[0]))
    np.testing.assert_allclose(middle, (first[0] + 3 * first[1] + 3 * first[2] + first[3]) / 8)


def test_torch_curves_equal_numpy_and_carry_gradients():
    image = torch.rand(1, 1, 6, 6).repeat(1, 3, 1, 1)
    curves = BezierCurves()
    out = curves(image)
    expected = bezier_transform(image[0, 0].numpy(), INITIAL_RAW_POINTS)
    np.testing.assert_allclose(out[0].detach().numpy(), expected, atol=1e-6)
    out.mean().backward()
    assert curves.raw_points.grad is not None and curves.raw_points.grad.abs().sum() > 0


def test_cnn_curves_start_at_the_official_initialisation():
    image = torch.rand(2, 3, 16, 16)
    np.testing.assert_allclose(ControlPointCNN()(image).detach().numpy(),
                               apply_curves(image, torch.from_numpy(INITIAL_RAW_POINTS)).numpy(), atol=1e-6)
