import math

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from stages.cmr_recon import masks
from stages.cmr_recon.masks import (
    TASK1_ACCELERATIONS,
    TASK2_ACCELERATIONS,
    acs_mask,
    effective_acceleration,
    make_mask,
)


def sampled_lines(mask: np.ndarray, frame: int = 0) -> set[int]:
    """ky lines of a Cartesian mask frame (all kx must agree)."""
    lines = mask[frame]
    assert (lines == lines[:, :1]).all(), "Cartesian mask must sample whole readout lines"
    return set(np.flatnonzero(lines[:, 0]).tolist())


def test_official_acceleration_sets():
    assert TASK1_ACCELERATIONS == (4, 8, 10)
    assert TASK2_ACCELERATIONS == (4, 8, 12, 16, 20, 24)


def test_uniform_hand_case_every_rth_line_from_zero_plus_central_16():
    mask = make_mask("Uniform", nx=8, ny=32, nt=3, acceleration=4)
    assert mask.shape == (3, 32, 8) and mask.dtype == bool
    expected = {0, 4, 8, 12, 16, 20, 24, 28} | set(range(8, 24))
    for frame in range(3):
        assert sampled_lines(mask, frame) == expected


def test_uniform_r4_on_200_lines_samples_62_columns_as_the_study_note_says():
    mask = make_mask("Uniform", nx=400, ny=200, nt=1, acceleration=4)
    assert len(sampled_lines(mask)) == 62
    assert effective_acceleration(mask) == pytest.approx(200 / 62)
    assert effective_acceleration(mask) < 4


def test_acs_region_cartesian_and_radial():
    cartesian = acs_mask("Uniform", nx=10, ny=40)
    assert cartesian.shape == (40, 10)
    assert np.flatnonzero(cartesian[:, 0]).tolist() == list(range(12, 28))  # ny//2-8 .. ny//2+7
    assert cartesian[12:28].all() and cartesian.sum() == 16 * 10
    odd = acs_mask("ktGaussian", nx=10, ny=41)
    assert np.flatnonzero(odd[:, 0]).tolist() == list(range(12, 28))
    radial = acs_mask("ktRadial", nx=30, ny=40)
    assert radial.sum() == 256 and radial[12:28, 7:23].all()


def test_kt_uniform_even_nt_is_the_sheared_lattice_plus_acs():
    ny, nt, r = 40, 6, 4
    mask = make_mask("ktUniform", nx=5, ny=ny, nt=nt, acceleration=r)
    acs = set(range(ny // 2 - 8, ny // 2 + 8))
    for t in range(nt):
        expected = {ky for ky in range(ny) if (ky - t) % r == 0} | acs
        assert sampled_lines(mask, t) == expected


def test_kt_uniform_odd_nt_reproduces_the_official_index_arithmetic():
    # Hand-traced through ktUniformSampling.m/ktdup.m for ny=8, nt=3, R=4: the frame offset
    # floor(nt)/2 = 1.5 shifts each sample by ny/2 in the column-major (ky, t) grid and
    # indices <= 0 are clamped to the first grid point.
    mask = make_mask("ktUniform", nx=2, ny=8, nt=3, acceleration=4, acs=0)
    assert [sampled_lines(mask, t) for t in range(3)] == [{0, 5}, {1, 6}, {2}]


def test_ktdup_moves_duplicates_to_nearest_vacant_line_lower_first():
    ph, ti = masks._ktdup(np.zeros(3), np.zeros(3), ny=5, nt=1)
    assert ph.tolist() == [0, -1, 1] and ti.tolist() == [0, 0, 0]


def test_matlab_random_stream_matches_known_matlab_values():
    # MATLAB: rng(1); rand(1,3) -> 0.4170 0.7203 0.0001 ; rng(0) (default) -> 0.8147 0.9058 0.1270
    matlab_seed_1 = [0.417022004702574, 0.720324493442158, 1.14374817344887e-04]
    matlab_seed_0 = [0.814723686393179, 0.905791937075619, 0.126986816293506]
    np.testing.assert_allclose(masks._matlab_rand(1, 3), matlab_seed_1, rtol=1e-12)
    np.testing.assert_allclose(masks._matlab_rand(0, 3), matlab_seed_0, rtol=1e-12)


@pytest.mark.parametrize("ny,r", [(200, 4), (246, 8), (250, 4), (101, 24)])
def test_kt_gaussian_line_count_per_frame_is_round_ny_over_r(ny, r):
    mask = make_mask("ktGaussian", nx=3, ny=ny, nt=7, acceleration=r, acs=0, seed=11)
    expected = math.floor(ny / r + 0.5)  # MATLAB round: 250/4 = 62.5 -> 63
    for t in range(7):
        assert len(sampled_lines(mask, t)) == expected


def test_kt_gaussian_acs_is_a_union_and_seed_is_deterministic():
    args = dict(nx=4, ny=120, nt=8, acceleration=8)
    without_acs = make_mask("ktGaussian", acs=0, seed=3, **args)
    with_acs = make_mask("ktGaussian", seed=3, **args)
    np.testing.assert_array_equal(with_acs, without_acs | acs_mask("ktGaussian", 4, 120)[None])
    np.testing.assert_array_equal(with_acs, make_mask("ktGaussian", seed=3, **args))
    assert not np.array_equal(with_acs, make_mask("ktGaussian", seed=4, **args))
    # a different line set in (nearly) every frame: k-t incoherence
    frames = {tuple(sorted(sampled_lines(without_acs, t))) for t in range(8)}
    assert len(frames) == 8


def test_kt_gaussian_density_peaks_at_the_centre():
    mask = make_mask("ktGaussian", nx=1, ny=200, nt=300, acceleration=8, acs=0, seed=5)
    per_line = mask[:, :, 0].mean(axis=0)
    centre = per_line[100 - 20 : 100 + 20].mean()
    edge = np.concatenate([per_line[:40], per_line[-40:]]).mean()
    assert centre > 2 * edge


def dense_radial_reference(nx: int, ny: int, nt: int, r: int) -> np.ndarray:
    """Brute force of ktRadialSampling.m: rotate the line image per angle, nearest neighbour."""
    beams = math.floor(1 / (r * 0.6) * 180)
    a = max(nx, ny)
    line_row = math.floor(a / 2 + 0.5) - 1
    aux = np.zeros((a, a), dtype=bool)
    aux[line_row] = True
    c = (a - 1) / 2
    rr, cc = np.meshgrid(np.arange(a) - c, np.arange(a) - c, indexing="ij")
    out = np.zeros((nt, ny, nx), dtype=bool)
    x0, y0 = a // 2 + math.ceil(-nx / 2), a // 2 + math.ceil(-ny / 2)
    for t in range(nt):
        union = np.zeros((a, a), dtype=bool)
        for k in range(beams + 1):
            theta = math.radians(137.5 * t + k * 180 / beams)
            src_r = np.floor(c + cc * math.sin(theta) + rr * math.cos(theta) + 0.5).astype(int)
            src_c = np.floor(c + cc * math.cos(theta) - rr * math.sin(theta) + 0.5).astype(int)
            ok = (src_r >= 0) & (src_r < a) & (src_c >= 0) & (src_c < a)
            rotated = np.zeros((a, a), dtype=bool)
            rotated[ok] = aux[src_r[ok], src_c[ok]]
            union |= rotated
        out[t] = union[x0 : x0 + nx, y0 : y0 + ny].T
    return out


@pytest.mark.parametrize("nx,ny,nt,r", [(40, 32, 3, 8), (33, 47, 2, 24), (48, 48, 2, 4)])
def test_kt_radial_matches_brute_force_rotation(nx, ny, nt, r):
    fast = make_mask("ktRadial", nx=nx, ny=ny, nt=nt, acceleration=r, acs=0)
    np.testing.assert_array_equal(fast, dense_radial_reference(nx, ny, nt, r))


def test_kt_radial_geometry():
    mask = make_mask("ktRadial", nx=64, ny=64, nt=4, acceleration=8)
    # frame 0: spokes at 0 and 180 degrees are the MATLAB rows round(a/2) and its mirror,
    # i.e. full ky lines at kx = 31 and 32
    assert mask[0, :, 31].all() and mask[0, :, 32].all()
    assert not mask[1, :, 31].all()  # frame 1 is rotated by 137.5 degrees
    for t in range(4):
        assert mask[t][acs_mask("ktRadial", 64, 64)].all()
        # Spokes pass through the centre, so the mask is point-symmetric about (31.5, 31.5) up
        # to the half-pixel offset of the one-pixel source line: its reflection lies within
        # one pixel of the mask.
        flipped = mask[t, ::-1, ::-1]
        assert (binary_dilation(mask[t]) & flipped).sum() / flipped.sum() > 0.98
    assert not np.array_equal(mask[1], mask[2])
    accelerations = [effective_acceleration(make_mask("ktRadial", 96, 96, 1, r)) for r in (4, 8, 16, 24)]
    assert accelerations == sorted(accelerations) and accelerations[0] > 1.5


@pytest.mark.parametrize("pattern", ["Uniform", "ktUniform", "ktGaussian", "ktRadial"])
def test_effective_acceleration_rises_with_r_but_stays_below_nominal_for_cartesian(pattern):
    values = [effective_acceleration(make_mask(pattern, 64, 96, 4, r, seed=1)) for r in (4, 8, 12)]
    assert values == sorted(values)
    if pattern != "ktRadial":
        assert all(v < r for v, r in zip(values, (4, 8, 12)))


def test_bad_requests_name_the_problem():
    with pytest.raises(ValueError, match="Radial2"):
        make_mask("Radial2", 8, 8, 1, 4)
    with pytest.raises(ValueError, match="acceleration"):
        make_mask("Uniform", 8, 32, 1, 1)
    with pytest.raises(ValueError, match="acceleration"):
        make_mask("ktUniform", 8, 32, 1, 4.5)
    with pytest.raises(ValueError, match="acs"):
        make_mask("Uniform", 8, 12, 1, 4, acs=16)
    with pytest.raises(ValueError, match="samples no"):
        effective_acceleration(np.zeros((2, 3), dtype=bool))
    assert effective_acceleration(np.ones((2, 3), dtype=bool)) == 1.0


@pytest.mark.parametrize("pattern", ["Uniform", "ktUniform", "ktGaussian", "ktRadial"])
@pytest.mark.parametrize("acs", [8, 16])
def test_acs_read_from_the_mask_is_the_generators_acs(pattern, acs):
    """Item 7 of issue 21: the network takes the ACS from the mask. Checked against acs_mask for
    every pattern where no lattice line touches the ACS (ny//2-acs//2-1 and ny//2+acs//2 unsampled)."""
    from stages.cmr_recon.masks import acs_from_mask

    ny, nx, nt = 130, 72, 6  # 130: Uniform lines 0, R, 2R... miss both lines next to the ACS for R = 4, 8
    for acceleration in (4, 8):
        mask = make_mask(pattern, nx, ny, nt, acceleration, acs=acs, seed=3)
        found = acs_from_mask(mask)
        expected = acs_mask(pattern, nx, ny, acs=acs)
        neighbours = [ny // 2 - acs // 2 - 1, ny // 2 + acs // 2]
        assert mask.all(axis=0)[found].all() and found[expected].all()  # fully sampled, and holds the ACS
        if pattern == "ktRadial" or mask.all(axis=0)[neighbours, 0].any():
            continue  # radial: the spokes' dense centre may add a ring; a lattice line next to the ACS joins it
        np.testing.assert_array_equal(found, expected)
    task1 = make_mask("Uniform", nx, ny, nt, 4, acs=acs)
    np.testing.assert_array_equal(acs_from_mask(task1[0]), acs_from_mask(task1))  # a 2-D Task 1 mask reads the same


def test_acs_from_a_mask_without_a_sampled_centre_is_refused():
    from stages.cmr_recon.masks import MaskError, acs_from_mask

    mask = np.zeros((3, 32, 32), bool)
    mask[:, 1::4] = True  # lines 1, 5, ...: the centre line 16 is not among them
    with pytest.raises(MaskError, match="centre is not sampled"):
        acs_from_mask(mask)
