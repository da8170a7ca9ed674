import math

import numpy as np
import pytest

from stages.cmr_recon import phantom
from stages.cmr_recon.phantom import (
    HELD_OUT_MODALITIES,
    MODALITIES,
    SYNTHETIC_MODALITIES,
    cardiac_phantom,
    coil_maps,
    simulate_kspace,
)
from stages.cmr_recon.transforms import ifft2c, rss

NY, NX = 48, 64


def make(modality: str, nt: int = 4, nz: int = 3, seed: int = 0, **kwargs) -> np.ndarray:
    return cardiac_phantom(modality, NY, NX, nt, nz, np.random.default_rng(seed), **kwargs)


def test_modality_lists():
    assert len(MODALITIES) == 10 and len(set(MODALITIES)) == 10
    assert set(SYNTHETIC_MODALITIES) <= set(MODALITIES)
    assert HELD_OUT_MODALITIES == ("flow2d", "blackblood")
    assert set(HELD_OUT_MODALITIES) <= set(SYNTHETIC_MODALITIES)


@pytest.mark.parametrize("modality", MODALITIES)
def test_shapes_and_values(modality):
    image = make(modality)
    expected = (3, NY, NX) if modality == "blackblood" else (4, 3, NY, NX)
    assert image.shape == expected and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0
    assert 0.3 < image.max() < 2.0
    assert image.std() > 0.05


def test_deterministic_per_seed_and_complex_phase_keeps_the_magnitude():
    a, b, c = make("cine_sax", seed=3), make("cine_sax", seed=3), make("cine_sax", seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    complex_image = make("cine_sax", seed=3, complex_phase=True)
    assert complex_image.dtype == np.complex64
    np.testing.assert_allclose(np.abs(complex_image), a, atol=1e-6)
    phase = np.angle(complex_image[0, 0])[a[0, 0] > 0.2]
    assert 0.05 < phase.std() < 1.0  # a modest, non-trivial phase


def test_images_have_texture_not_just_flat_regions():
    image = make("cine_sax")[0, 1]
    # piecewise-constant shapes would give few distinct values
    assert len(np.unique(np.round(image, 4))) > 500


def test_cine_moves_over_time_and_mapping_weightings_change_contrast():
    cine = make("cine_sax", nt=8)
    assert np.abs(cine[4] - cine[0]).mean() > 5e-3  # mid-cycle differs from end-diastole
    t1 = make("T1map", nt=6)
    assert np.abs(t1[-1] - t1[0]).mean() > 0.05
    for weighting in range(1, 6):
        assert not np.allclose(t1[weighting], t1[0])


def heart_pixels(seed: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(row, col) of the LV blood centre and of mid-myocardium, away from the RV, at frame 0."""
    anatomy = phantom._random_anatomy(np.random.default_rng(seed))
    pixel = 2.0 / min(NY, NX)
    def index(x: float, y: float) -> tuple[int, int]:
        return int(round(y / pixel + NY / 2)), int(round(x / pixel + NX / 2))
    size = 1 - 0.45 * (0.5 / 3)  # slice 0 of 3
    endo = anatomy.lv_radius * size
    epi = endo + anatomy.wall * (0.8 + 0.2 * size)
    mid = (endo + epi) / 2
    blood = index(anatomy.heart_x, anatomy.heart_y)
    angle = anatomy.heart_angle  # the RV lies the other way
    muscle = index(anatomy.heart_x + mid * math.cos(angle), anatomy.heart_y + mid * math.sin(angle))
    return blood, muscle


def test_contrasts_differ_between_modalities():
    blood, muscle = heart_pixels(seed=7)
    cine = make("cine_sax", seed=7)[0, 0]
    dark = make("blackblood", seed=7)[0]
    t2 = make("T2map", nt=3, seed=7)[:, 0]
    assert cine[blood] > 2 * cine[muscle]  # bright blood
    assert dark[blood] < 0.2 * dark[muscle]  # dark blood
    # long blood T2: blood/myocardium ratio grows with echo time
    assert t2[2][blood] / t2[2][muscle] > 2 * t2[0][blood] / t2[0][muscle]
    flat = {m: make(m, nt=4, seed=7).reshape(-1, NY * NX)[0] for m in SYNTHETIC_MODALITIES}
    for i, first in enumerate(SYNTHETIC_MODALITIES):
        for second in SYNTHETIC_MODALITIES[i + 1 :]:
            assert np.corrcoef(flat[first], flat[second])[0, 1] < 0.995, (first, second)


def test_coil_maps_are_normalised_and_smooth():
    maps = coil_maps(10, NY, NX)
    assert maps.shape == (10, NY, NX) and maps.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)
    # smooth: neighbouring pixels differ little compared with the map's magnitude
    assert np.abs(np.diff(maps, axis=-1)).max() < 0.2
    assert np.abs(maps).std(axis=0).mean() > 0.05  # the coils do see different regions


def test_simulated_kspace_gives_back_the_phantom():
    rng = np.random.default_rng(0)
    image = make("cine_lax", nt=2, nz=2, complex_phase=True)
    maps = coil_maps(6, NY, NX)
    kspace = simulate_kspace(image, maps, 0.0, rng)
    assert kspace.shape == (2, 2, 6, NY, NX) and kspace.dtype == np.complex64
    np.testing.assert_allclose(rss(ifft2c(kspace), coil_axis=2), np.abs(image), atol=1e-4)
    # coil images are maps * image
    np.testing.assert_allclose(ifft2c(kspace[1, 0]), maps * image[1, 0], atol=1e-4)


def test_simulated_noise_level():
    rng = np.random.default_rng(1)
    kspace = simulate_kspace(np.zeros((3, NY, NX)), coil_maps(4, NY, NX), 0.5, rng)
    assert np.mean(np.abs(kspace) ** 2) == pytest.approx(0.25, rel=0.05)
    assert abs(np.mean(kspace.real * kspace.imag)) < 0.01  # circular


def test_bad_requests_are_rejected():
    with pytest.raises(ValueError, match="perfusion"):
        make("perfusion")
    with pytest.raises(ValueError, match="too small"):
        cardiac_phantom("cine_sax", 8, 8, 2, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="do not match"):
        simulate_kspace(np.zeros((NY, NX + 1)), coil_maps(2, NY, NX), 0.0, np.random.default_rng(0))
