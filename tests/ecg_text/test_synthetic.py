"""The parametric beat model shows each condition in the leads where it should, measured independently."""
import numpy as np
from scipy.signal import find_peaks

from stages.ecg_text.io import CANONICAL_LEADS
from stages.ecg_text.synthetic import downstream_codes, synthesise_ecg, write_report

FS = 500.0
LEAD = {name: i for i, name in enumerate(CANONICAL_LEADS)}


def r_peaks(signal):
    peaks, _ = find_peaks(signal[LEAD["II"]], distance=int(0.3 * FS), prominence=0.4)
    return peaks


def st_level(signal, lead):
    """Median over beats of the mean at R + 80..160 ms minus the mean at R - 60..-40 ms (PR baseline)."""
    values = [signal[lead, p + 40:p + 80].mean() - signal[lead, p - 30:p - 20].mean() for p in r_peaks(signal)[1:-1]]
    return float(np.median(values))


def test_inferior_st_elevation_only_in_inferior_leads():
    normal = synthesise_ecg(set(), FS, 10.0, 0.0, np.random.default_rng(3))
    sick = synthesise_ecg({"inferior_st_elevation"}, FS, 10.0, 0.0, np.random.default_rng(3))
    for lead in ("II", "III", "aVF"):
        assert st_level(sick, LEAD[lead]) - st_level(normal, LEAD[lead]) > 0.1
    for lead in ("V1", "V2", "V3", "V4", "V5", "V6"):
        assert abs(st_level(sick, LEAD[lead]) - st_level(normal, LEAD[lead])) < 0.03


def test_atrial_fibrillation_makes_rr_irregular():
    def rr_variation(conditions, seed):
        peaks = r_peaks(synthesise_ecg(conditions, FS, 10.0, 0.01, np.random.default_rng(seed)))
        rr = np.diff(peaks)
        return rr.std() / rr.mean()
    assert rr_variation({"atrial_fibrillation"}, 4) > 3 * rr_variation(set(), 4)


def test_codes_and_reports_use_different_vocabularies():
    assert downstream_codes("ptbxl", {"wide_qrs"}) == {"CLBBB": 100.0}
    assert downstream_codes("csn", {"wide_qrs"}) == {"IVB": 100.0, "SR": 100.0}
    assert downstream_codes("cpsc", set()) == {"NORM": 100.0}
    report = write_report({"wide_qrs"}, 0.0, 0.0, np.random.default_rng(0)).lower()
    assert "clbbb" not in report and "ivb" not in report
