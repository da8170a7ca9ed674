"""Synthetic phantoms: deterministic for a seed, organ sizes and attenuation follow the known effects."""
import numpy as np
import pytest

from stages.ct_fairness.organs import amos_to_organ_table, map_labels, organ_volumes_ml
from stages.ct_fairness.phantom import (
    BASE_HU,
    Effects,
    Scanner,
    ageing_factor,
    render_phantom,
    scanner_hu,
    subject_anatomy,
    systematic_effects,
)

COARSE = Scanner(spacing=(10.0, 10.0, 10.0), fov_mm=(340.0, 260.0, 230.0))


def test_systematic_effects_are_the_params():
    effects = Effects()
    assert ageing_factor(30, effects) == 0.0 and ageing_factor(80, effects) == 1.0 and ageing_factor(60, effects) == 0.5
    scales, shifts = systematic_effects("F", 80, effects)
    assert scales["pancreas"] == pytest.approx(effects.female_volume_scale["pancreas"] * effects.old_volume_scale["pancreas"])
    assert shifts["pancreas"] == pytest.approx(effects.old_hu_shift["pancreas"])
    scales, shifts = systematic_effects("M", 25, effects)
    assert all(v == 1.0 for v in scales.values()) and all(v == 0.0 for v in shifts.values())


def test_phantom_is_deterministic_for_a_seed():
    first = render_phantom(subject_anatomy("F", 50, Effects(), np.random.default_rng(3)), COARSE)
    second = render_phantom(subject_anatomy("F", 50, Effects(), np.random.default_rng(3)), COARSE)
    other = render_phantom(subject_anatomy("F", 50, Effects(), np.random.default_rng(4)), COARSE)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], other[0])
    image, label = first
    assert image.dtype == np.int16 and label.dtype == np.uint8 and image.shape == label.shape == COARSE.shape()
    assert set(np.unique(map_labels(label, amos_to_organ_table()))) == {0, 1, 2, 3, 4}


def test_organ_volumes_follow_sex_and_age_effects():
    quiet = Effects(individual_volume_sd=0.0, shape_jitter=0.0, position_sd_mm=0.0, female_body_scale=1.0)
    scanner = Scanner(spacing=(4.0, 4.0, 4.0), fov_mm=(340.0, 260.0, 240.0))
    volumes = {}
    for sex, age in (("M", 30), ("F", 30), ("M", 80)):
        _, label = render_phantom(subject_anatomy(sex, age, quiet, np.random.default_rng(0)), scanner)
        volumes[(sex, age)] = organ_volumes_ml(map_labels(label, amos_to_organ_table()), scanner.spacing)
    liver_ratio = volumes[("F", 30)]["liver"] / volumes[("M", 30)]["liver"]
    assert liver_ratio == pytest.approx(quiet.female_volume_scale["liver"], abs=0.06)
    pancreas_ratio = volumes[("M", 80)]["pancreas"] / volumes[("M", 30)]["pancreas"]
    assert pancreas_ratio == pytest.approx(quiet.old_volume_scale["pancreas"], abs=0.08)
    assert volumes[("M", 80)]["liver"] == pytest.approx(volumes[("M", 30)]["liver"], rel=0.03)  # no ageing effect on the liver


def test_scanner_changes_attenuation_as_specified():
    scanner = Scanner(offset_hu=30.0, enhancement=0.5)
    assert scanner_hu(BASE_HU["liver"], "liver", scanner) == pytest.approx(40 + 0.5 * (BASE_HU["liver"] - 40) + 30)
    assert scanner_hu(BASE_HU["fat"], "fat", scanner) == pytest.approx(BASE_HU["fat"] + 30)
    anatomy = subject_anatomy("M", 30, Effects(), np.random.default_rng(0))
    plain, _ = render_phantom(anatomy, Scanner(spacing=COARSE.spacing, fov_mm=COARSE.fov_mm, noise_hu=0.0))
    shifted, _ = render_phantom(anatomy, Scanner(spacing=COARSE.spacing, fov_mm=COARSE.fov_mm, noise_hu=0.0, offset_hu=30.0))
    inside = plain > -900
    assert np.median(shifted[inside].astype(float) - plain[inside]) == pytest.approx(30.0, abs=1.0)
