"""MERL's preprocessing steps against scipy / numpy references and hand-computed cases."""
import numpy as np
import pytest
from scipy.signal import resample as fourier_resample

from stages.ecg_text.io import CANONICAL_LEADS
from stages.ecg_text.signal import fill_non_finite, min_max, prepare, resample, to_canonical_order

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def test_mimic_order_is_reordered_by_name_like_merls_row_swap():
    signal = np.arange(12)[:, None] * np.ones((12, 4))
    ordered = to_canonical_order(signal, MIMIC_ORDER)
    swapped = signal.copy()
    swapped[[4, 5]] = swapped[[5, 4]]   # MERL's finetune_dataset.py: ecg[[4, 5]] = ecg[[5, 4]]
    np.testing.assert_array_equal(ordered, swapped)
    with pytest.raises(ValueError, match="V6"):
        to_canonical_order(signal[:11], MIMIC_ORDER[:11])


def test_resampling_a_band_limited_signal_matches_fourier_resampling():
    t = np.arange(1000) / 1000.0
    signal = np.sin(2 * np.pi * 3 * t)[None]
    ours = resample(signal, 1000.0, 500.0)
    reference = fourier_resample(signal, 500, axis=-1)
    assert ours.shape == (1, 500)
    np.testing.assert_allclose(ours[:, 50:-50], reference[:, 50:-50], atol=2e-3)


def test_non_finite_samples_become_a_local_mean():
    row = np.array([[1.0, 2.0, np.nan, 4.0, 5.0, np.inf, 100.0]])
    filled = fill_non_finite(row, window=1)
    assert filled[0, 2] == pytest.approx(3.0) and filled[0, 5] == pytest.approx(52.5)
    assert np.isfinite(fill_non_finite(np.full((1, 3), np.nan), 1)).all()


def test_min_max_over_the_whole_record():
    signal = np.array([[0.0, 2.0], [-2.0, 6.0]])
    np.testing.assert_allclose(min_max(signal), [[0.25, 0.5], [0.0, 1.0]])


def test_prepare_cuts_and_refuses_short_records():
    signal = np.random.default_rng(0).normal(size=(12, 5000))
    out = prepare(signal, 500.0, list(CANONICAL_LEADS), 100.0, 10.0, 5)
    assert out.shape == (12, 1000) and out.min() == 0.0 and out.max() == 1.0
    with pytest.raises(ValueError, match="10.0 s required"):
        prepare(signal[:, :4000], 500.0, list(CANONICAL_LEADS), 100.0, 10.0, 5)
