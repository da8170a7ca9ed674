"""Mesh metrics against brute-force numpy/scipy references and trimesh's volume."""
import numpy as np
import pytest
import trimesh
from scipy.spatial.distance import cdist, directed_hausdorff

from stages.heart_mesh.conditions import age_group, condition_vector
from stages.heart_mesh.metrics import assd, chamfer, ejection_fraction, hausdorff, lv_volume, sequence_distances


@pytest.fixture()
def clouds():
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) + 0.3


def test_distances_match_brute_force(clouds):
    a, b = clouds
    d = cdist(a, b)
    assert hausdorff(a, b) == pytest.approx(max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]))
    assert assd(a, b) == pytest.approx((d.min(1).sum() + d.min(0).sum()) / (len(a) + len(b)))
    assert chamfer(a, b) == pytest.approx(0.5 * ((d.min(1) ** 2).mean() + (d.min(0) ** 2).mean()))
    assert chamfer(a, b) == pytest.approx(chamfer(b, a)) and assd(a, a) == 0.0
    both = sequence_distances(np.stack([a[:200], a[100:300]]), np.stack([b, b]))
    assert both["hausdorff"] == pytest.approx(np.mean([hausdorff(a[:200], b), hausdorff(a[100:300], b)]))
    assert both["chamfer"] == pytest.approx(np.mean([chamfer(a[:200], b), chamfer(a[100:300], b)]))


def test_hand_computed_case():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 0, 3]])
    # a -> b: 3, sqrt(10); b -> a: 3
    assert hausdorff(a, b) == pytest.approx(np.sqrt(10))
    assert assd(a, b) == pytest.approx((3 + np.sqrt(10) + 3) / 3)
    assert chamfer(a, b) == pytest.approx(0.5 * ((9 + 10) / 2 + 9))


def test_lv_volume_matches_trimesh_and_ignores_orientation():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=20.0)
    mesh.apply_scale([1.0, 1.2, 1.8])
    assert lv_volume(mesh.vertices, mesh.faces) == pytest.approx(mesh.volume, rel=1e-9)
    assert lv_volume(mesh.vertices, mesh.faces[:, ::-1]) == pytest.approx(mesh.volume, rel=1e-9)
    assert lv_volume(mesh.vertices + 50.0, mesh.faces) == pytest.approx(mesh.volume, rel=1e-9)  # translation-free
    assert ejection_fraction([120.0, 80.0, 50.0, 90.0]) == pytest.approx(70 / 120)


def test_official_age_groups_and_condition_vector():
    assert [age_group(a) for a in (40, 54.9, 55, 59.9, 60, 64, 65, 70, 74.9, 75, 90)] == [0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5]
    vector = condition_vector(62.0, 1.0, 80.6, 170.5)
    np.testing.assert_array_equal(vector, [0, 0, 1, 0, 0, 0, 0, 1, 81, 170])  # torch.round: half to even
    with pytest.raises(ValueError, match="sex must be 0 or 1"):
        condition_vector(62.0, 2.0, 80, 170)
