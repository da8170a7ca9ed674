"""The synthetic default (ours): a parametric beat model projected onto 12 leads, and template reports.

Each beat is a sum of Gaussians (P; Q, R, S; T), each with a 3-D cardiac dipole projected onto the
12 leads by their lead vectors (hexaxial frontal-plane angles for the limb leads, horizontal-plane
angles for V1-V6). Conditions change lead-specific morphology: inferior ST elevation (II, III, aVF,
reciprocal depression in I and aVL), anterior ST elevation (V1-V4), a wide QRS, atrial fibrillation
(irregular RR, no P, fibrillatory waves mainly in II and V1), lateral T inversion (I, aVL, V5, V6) and
sinus tachycardia. Reports come from templates with synonyms, negations, shuffled order and
irrelevant phrases; downstream sets carry codes (PTB-XL-, CPSC- and CSN-like) unlike the entity names.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from stages.ecg_text.io import CANONICAL_LEADS

CONDITIONS: tuple[str, ...] = ("inferior_st_elevation", "anterior_st_elevation", "wide_qrs", "atrial_fibrillation",
                               "lateral_t_inversion", "sinus_tachycardia")

# Downstream codes per synthetic set: code -> the conditions that make it positive (NORM-like: none present).
DOWNSTREAM_CODES: dict[str, dict[str, tuple[str, ...]]] = {
    "ptbxl": {"NORM": (), "IMI": ("inferior_st_elevation",), "ASMI": ("anterior_st_elevation",), "CLBBB": ("wide_qrs",),
              "AFIB": ("atrial_fibrillation",), "INVT": ("lateral_t_inversion",), "STACH": ("sinus_tachycardia",)},
    "cpsc": {"NORM": (), "AFIB": ("atrial_fibrillation",), "CLBBB": ("wide_qrs",),
             "STE": ("inferior_st_elevation", "anterior_st_elevation")},
    "csn": {"SR": (), "AFIB": ("atrial_fibrillation",), "ST": ("sinus_tachycardia",), "IVB": ("wide_qrs",),
            "TWO": ("lateral_t_inversion",)},
}
NORMAL_CODES = {"NORM", "SR"}

_FRONTAL_DEG = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
_HORIZONTAL_DEG = {"V1": 120.0, "V2": 95.0, "V3": 75.0, "V4": 60.0, "V5": 30.0, "V6": 0.0}


def lead_vectors() -> np.ndarray:
    """(12, 3) unit lead vectors in (left, inferior, anterior) coordinates, canonical lead order."""
    rows = []
    for lead in CANONICAL_LEADS:
        if lead in _FRONTAL_DEG:
            angle = np.deg2rad(_FRONTAL_DEG[lead])
            rows.append((np.cos(angle), np.sin(angle), 0.0))
        else:
            angle = np.deg2rad(_HORIZONTAL_DEG[lead])
            rows.append((np.cos(angle), 0.0, np.sin(angle)))
    return np.asarray(rows)


def lead_weights(leads: tuple[str, ...], value: float, default: float = 0.0) -> np.ndarray:
    return np.asarray([value if lead in leads else default for lead in CANONICAL_LEADS])


def beat_times(duration_s: float, heart_rate: float, irregular: bool, rng: np.random.Generator) -> np.ndarray:
    """R-peak times: regular with 3% jitter, or with AF's 35% irregularity."""
    rr = 60.0 / heart_rate
    spread = 0.35 if irregular else 0.03
    times, t = [], rng.uniform(0.1, rr)
    while t < duration_s + 0.5:
        times.append(t)
        t += rr * rng.uniform(1 - spread, 1 + spread)
    return np.asarray(times)


def gaussian_train(t: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t[:, None] - centres[None, :]) / sigma) ** 2).sum(axis=1)


def plateau_train(t: np.ndarray, starts: np.ndarray, length: float, edge: float) -> np.ndarray:
    """Smooth ST-segment plateaus (logistic edges) after each beat."""
    rise = expit((t[:, None] - starts[None, :]) / edge)
    fall = expit((t[:, None] - starts[None, :] - length) / edge)
    return (rise - fall).sum(axis=1)


def synthesise_ecg(conditions: set[str], fs: float, duration_s: float, noise_mv: float,
                   rng: np.random.Generator) -> np.ndarray:
    """(12, samples) millivolts in canonical lead order for the given conditions."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}")
    t = np.arange(int(round(fs * duration_s))) / fs
    vectors = lead_vectors() * lead_weights(tuple(_HORIZONTAL_DEG), 1.4, 1.0)[:, None]
    af = "atrial_fibrillation" in conditions
    rate = rng.uniform(105, 140) if "sinus_tachycardia" in conditions and not af else rng.uniform(55, 95)
    if af:
        rate = rng.uniform(80, 130)
    r = beat_times(duration_s, rate, af, rng)
    widen = 2.6 if "wide_qrs" in conditions else 1.0
    axis = rng.normal(0, 0.15, 3)

    def dipole(direction: tuple[float, float, float], amplitude: float) -> np.ndarray:
        d = np.asarray(direction) + axis
        return vectors @ (amplitude * rng.uniform(0.8, 1.2) * d / np.linalg.norm(d))

    signal = np.zeros((12, t.size))
    if not af:
        signal += dipole((0.5, 0.8, 0.1), 0.15)[:, None] * gaussian_train(t, r - 0.16, 0.022)[None]
    signal += dipole((-0.3, -0.2, 0.4), 0.15)[:, None] * gaussian_train(t, r - 0.025 * widen, 0.008 * widen)[None]
    signal += dipole((0.6, 0.7, -0.3), 1.3)[:, None] * gaussian_train(t, r, 0.010 * widen)[None]
    signal += dipole((-0.4, -0.3, 0.8), 0.5)[:, None] * gaussian_train(t, r + 0.03 * widen, 0.012 * widen)[None]
    if "wide_qrs" in conditions:  # broad notched R' in the left-lateral leads, deep S in V1 (LBBB-like)
        signal += lead_weights(("I", "aVL", "V5", "V6"), 0.6)[:, None] * gaussian_train(t, r + 0.06, 0.02)[None]
        signal -= lead_weights(("V1", "V2"), 0.7)[:, None] * gaussian_train(t, r + 0.05, 0.025)[None]
    qt = 0.3 * np.sqrt(60.0 / rate)
    t_wave = dipole((0.5, 0.6, 0.3), 0.3)[:, None] * gaussian_train(t, r + qt, 0.045)[None]
    if "lateral_t_inversion" in conditions:
        t_wave *= lead_weights(("I", "aVL", "V5", "V6"), -1.0, 1.0)[:, None]
    signal += t_wave
    st = plateau_train(t, r + 0.05 * widen, 0.18, 0.012)[None]
    if "inferior_st_elevation" in conditions:
        weights = lead_weights(("II", "III", "aVF"), 0.22) - lead_weights(("I", "aVL"), 0.1)
        signal += weights[:, None] * st
    if "anterior_st_elevation" in conditions:
        signal += lead_weights(("V1", "V2", "V3", "V4"), 0.25)[:, None] * st
    if af:
        f_wave = np.sin(2 * np.pi * rng.uniform(5, 7) * t + rng.uniform(0, 2 * np.pi))
        f_wave *= 1 + 0.3 * np.sin(2 * np.pi * 0.3 * t)
        signal += lead_weights(("II", "V1"), 0.07, 0.015)[:, None] * f_wave[None]
    wander = rng.uniform(0.02, 0.1, (12, 1)) * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 6.3, (12, 1)))
    return signal + wander + rng.normal(0, noise_mv, signal.shape)


def draw_conditions(probability: float, rng: np.random.Generator) -> set[str]:
    present = {c for c in CONDITIONS if rng.random() < probability}
    if "atrial_fibrillation" in present:
        present.discard("sinus_tachycardia")
    return present


def downstream_codes(dataset: str, conditions: set[str]) -> dict[str, float]:
    """PTB-XL-style ``scp_codes`` (code -> likelihood 100) of a record in ``dataset``."""
    codes = {code for code, causes in DOWNSTREAM_CODES[dataset].items() if set(causes) & conditions}
    normal = [c for c in DOWNSTREAM_CODES[dataset] if c in NORMAL_CODES]
    if dataset == "csn":  # CSN's SR is the rhythm: every record without AF
        if "atrial_fibrillation" not in conditions:
            codes |= set(normal)
    elif not conditions:
        codes |= set(normal)
    return {code: 100.0 for code in sorted(codes)}


# Templates (ours): several phrasings per finding, negations of absent findings, noise phrases.
FINDING_PHRASES: dict[str, tuple[str, ...]] = {
    "inferior_st_elevation": ("st elevation in inferior leads", "ST elevation II, III, aVF", "inferior ST segment elevation",
                              "acute inferior injury", "inferior myocardial infarction, acute"),
    "anterior_st_elevation": ("anterior st elevation", "ST elevation V1-V4", "anteroseptal ST segment elevation",
                              "acute anterior injury pattern"),
    "wide_qrs": ("wide QRS complex", "left bundle branch block", "broad QRS", "intraventricular conduction delay",
                 "QRS widening"),
    "atrial_fibrillation": ("atrial fibrillation", "afib with irregular ventricular response", "irregularly irregular rhythm, atrial fibrillation",
                            "AF"),
    "lateral_t_inversion": ("T wave inversion in lateral leads", "inverted T waves I, aVL, V5, V6", "lateral T-wave inversion",
                            "negative T waves laterally"),
    "sinus_tachycardia": ("sinus tachycardia", "sinus rhythm, rapid rate", "tachycardia, sinus origin"),
}
NEGATION_PHRASES: dict[str, tuple[str, ...]] = {
    "inferior_st_elevation": ("no inferior st elevation", "without ST elevation in inferior leads"),
    "anterior_st_elevation": ("no anterior ST elevation", "absence of anterior st elevation"),
    "wide_qrs": ("no QRS widening", "no bundle branch block"),
    "atrial_fibrillation": ("no atrial fibrillation", "negative for afib"),
    "lateral_t_inversion": ("no lateral T wave inversion", "without T wave inversion in lateral leads"),
    "sinus_tachycardia": ("no sinus tachycardia",),
}
IRRELEVANT_PHRASES: tuple[str, ...] = ("compared with previous tracing", "technically fair quality", "unconfirmed report",
                                       "lead placement verified", "clinical correlation suggested", "EKG recorded at rest")
SINUS_PHRASES = ("sinus rhythm", "normal sinus rhythm", "regular sinus rhythm")
NORMAL_PHRASES = ("normal ECG", "within normal limits", "normal EKG")


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def write_report(conditions: set[str], negation_probability: float, irrelevant_probability: float,
                 rng: np.random.Generator) -> str:
    phrases = [_pick(FINDING_PHRASES[c], rng) for c in sorted(conditions)]
    if "atrial_fibrillation" not in conditions and "sinus_tachycardia" not in conditions and rng.random() < 0.7:
        phrases.append(_pick(SINUS_PHRASES, rng))
    if not conditions:
        phrases.append(_pick(NORMAL_PHRASES, rng))
    phrases += [_pick(NEGATION_PHRASES[c], rng) for c in CONDITIONS if c not in conditions and rng.random() < negation_probability]
    phrases += [_pick(IRRELEVANT_PHRASES, rng) for _ in range(2) if rng.random() < irrelevant_probability]
    order = rng.permutation(len(phrases))
    text = ". ".join(phrases[i] for i in order) + "."
    return text.upper() if rng.random() < 0.2 else text
