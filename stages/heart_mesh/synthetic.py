"""Synthetic 3D+t hearts (ours): LV cavity, LV epicardium and RV over one contraction cycle.

Each surface is a trimesh icosphere deformed into an ellipsoid, so every subject and frame shares
one topology (as MeshHeart's template meshes do). End-diastolic volume and ejection fraction are
smooth functions of age, sex, weight and height; each subject adds a smooth shape perturbation,
and a disease subgroup has reduced ejection fraction, dilation or regional hypokinesis of a
``severity`` in [0.5, 1] (the injected deviation; 0 for healthy subjects). Each subject also
carries synthetic phenotypes: two linked to the deviation, two to the covariates only, one to
nothing (the PheWAS analogue's positives, confounded and null).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.heart_mesh.formats import MeshSequence, edges_from_faces

COMPONENTS = ("lv_endo", "lv_epi", "rv")
DISEASE_KINDS = ("reduced_ef", "dilation", "hypokinesis")
PHENOTYPES = {  # name: what drives it in the generator
    "log_nt_probnp": "deviation", "walk_distance_m": "deviation",
    "systolic_bp": "age, weight", "hba1c": "weight", "ldl": "nothing",
}
HYPOKINETIC_DIRECTION = np.array([1.0, 0.0, -0.3]) / np.linalg.norm([1.0, 0.0, -0.3])  # lateral wall, towards the apex


@dataclass(frozen=True)
class Template:
    """The unit icosphere each surface is deformed from, and the combined mesh's topology."""

    sphere: np.ndarray        # (n, 3) unit vectors
    sphere_faces: np.ndarray  # (f, 3), outward oriented
    faces: np.ndarray         # (3f, 3) faces of the three surfaces, vertex indices offset per surface
    edges: np.ndarray
    component: np.ndarray     # (3n,) index into COMPONENTS


def make_template(subdivisions: int) -> Template:
    import trimesh  # here, not at the top: evaluate reads PHENOTYPES and expected_lv from this module

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    unit, faces = np.asarray(sphere.vertices, dtype=np.float64), np.asarray(sphere.faces, dtype=np.int64)
    n = len(unit)
    combined = np.concatenate([faces + k * n for k in range(len(COMPONENTS))])
    return Template(unit, faces, combined, edges_from_faces(combined), np.repeat(np.arange(len(COMPONENTS)), n))


def sample_covariates(rng: np.random.Generator, count: int) -> pd.DataFrame:
    """UK Biobank-like ranges: age 45-80, sex 0 (female) / 1 (male), height by sex, weight from BMI."""
    sex = rng.integers(0, 2, count)
    height = np.where(sex == 1, rng.normal(176, 7, count), rng.normal(163, 6, count)).clip(145, 200)
    weight = (rng.normal(27, 4, count).clip(18, 42) * (height / 100) ** 2).clip(40, 150)
    age = rng.uniform(45, 80, count)
    return pd.DataFrame({"Age": age.round(1), "Sex": sex.astype(float), "Weight": weight.round(1), "Height": height.round(1)})


def expected_lv(age: float, sex: float, weight: float, height: float) -> tuple[float, float]:
    """The generator's noise-free LV end-diastolic volume (ml) and ejection fraction for a condition."""
    bsa = np.sqrt(height * weight / 3600.0)  # Mosteller
    edv = 70.0 * bsa * (1.12 if sex == 1 else 1.0) * (1.0 - 0.006 * (age - 60.0))
    ef = 0.62 - 0.003 * (age - 60.0) - 0.02 * (sex == 1)
    return float(edv), float(ef)


def contraction(frames: int) -> np.ndarray:
    """0 at end-diastole (frame 0), 1 at end-systole (mid-cycle), a raised cosine in between."""
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(frames) / frames))


def smooth_perturbation(unit: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """1 + a low-order polynomial on the sphere: a smooth radial scaling per vertex."""
    x, y, z = unit.T
    basis = np.stack([x, y, z, x * y, x * z, y * z, x**2 - y**2, 3 * z**2 - 1])
    return 1.0 + coefficients @ basis


def subject_sequence(template: Template, covariates: dict, disease: dict, frames: int, rng: np.random.Generator,
                     shape_noise: float, jitter_mm: float) -> np.ndarray:
    """Vertices ``(T, 3n, 3)`` in mm of one subject's cycle."""
    age, sex, weight, height = (covariates[k] for k in ("Age", "Sex", "Weight", "Height"))
    edv, ef = expected_lv(age, sex, weight, height)
    edv *= np.exp(rng.normal(0, 0.06))
    ef += rng.normal(0, 0.025)
    severity, kind = disease["severity"], disease["kind"]
    regional = np.zeros(len(template.sphere))
    if kind == "reduced_ef":
        ef *= 1.0 - 0.5 * severity
    elif kind == "dilation":
        edv *= 1.0 + 0.5 * severity
        ef *= 1.0 - 0.15 * severity
    elif kind == "hypokinesis":
        regional = severity * np.clip((template.sphere @ HYPOKINETIC_DIRECTION - 0.1) / 0.6, 0.0, 1.0)
    elongation = 1.7 * np.exp(rng.normal(0, 0.04))
    radius = (3.0 * edv * 1000.0 / (4.0 * np.pi * elongation)) ** (1 / 3)
    thickness = 7.0 * (1.1 if sex == 1 else 1.0) * (weight / 75.0) ** 0.2 + rng.normal(0, 0.4)
    rv_edv, rv_ef = 1.1 * edv * np.exp(rng.normal(0, 0.06)), 0.55 + rng.normal(0, 0.03)
    rv_scale = (3.0 * rv_edv * 1000.0 / (4.0 * np.pi * 0.9)) ** (1 / 3)
    rv_centre = np.array([-(radius + thickness + 0.6 * rv_scale + 2.0), 0.0, -0.1 * radius * elongation])
    shape = [smooth_perturbation(template.sphere, rng.normal(0, shape_noise, 8)) for _ in COMPONENTS]

    unit = template.sphere
    out = np.empty((frames, 3 * len(unit), 3))
    n = len(unit)
    for t, c in enumerate(contraction(frames)):
        volume_factor = 1.0 - ef * c * (1.0 - regional)  # per vertex: hypokinetic vertices move less
        short, long = radius * volume_factor**0.4, radius * elongation * volume_factor**0.2
        wall = thickness * (1.0 + 0.4 * c * (1.0 - regional))
        endo = np.stack([short * unit[:, 0], short * unit[:, 1], long * unit[:, 2]], axis=1) * shape[0][:, None]
        epi = np.stack([(short + wall) * unit[:, 0], (short + wall) * unit[:, 1], (long + wall) * unit[:, 2]], axis=1)
        rv_factor = (1.0 - rv_ef * c) ** (1 / 3)
        rv = rv_centre + rv_scale * rv_factor * unit * np.array([0.6, 1.0, 1.5]) * shape[2][:, None]
        out[t, :n], out[t, n:2 * n], out[t, 2 * n:] = endo, epi * shape[1][:, None], rv
    out += rng.normal(0, jitter_mm, out.shape)
    return out.astype(np.float32)


def draw_disease(rng: np.random.Generator, diseased: bool) -> dict:
    if not diseased:
        return {"kind": "healthy", "severity": 0.0}
    return {"kind": str(rng.choice(DISEASE_KINDS)), "severity": float(rng.uniform(0.5, 1.0))}


def phenotypes(rng: np.random.Generator, covariates: dict, severity: float) -> dict[str, float]:
    age, weight = covariates["Age"], covariates["Weight"]
    return {
        "log_nt_probnp": 4.0 + 1.5 * severity + 0.01 * (age - 60) + rng.normal(0, 0.4),
        "walk_distance_m": 550 - 3.0 * (age - 60) - 120 * severity + rng.normal(0, 40),
        "systolic_bp": 125 + 0.6 * (age - 60) + 0.3 * (weight - 80) + rng.normal(0, 12),
        "hba1c": 36 + 0.1 * (weight - 80) + rng.normal(0, 4),
        "ldl": 3.4 + rng.normal(0, 0.8),
    }


def synthetic_cohort(template: Template, train: int, val: int, disease_fraction: float, frames: int, seed: int,
                     shape_noise: float, jitter_mm: float):
    """Yield ``(split, subject, covariates, sequence, labels)``: healthy training subjects, then a validation
    split with ``round(disease_fraction * val)`` diseased subjects (ours: the normative model trains on healthy hearts)."""
    rng = np.random.default_rng(seed)
    covariates = sample_covariates(rng, train + val)
    diseased = np.zeros(train + val, dtype=bool)
    diseased[train + rng.choice(val, int(round(disease_fraction * val)), replace=False)] = True
    for index in range(train + val):
        split = "train" if index < train else "val"
        subject = f"{1000001 + index}"
        row = covariates.iloc[index].to_dict()
        disease = draw_disease(rng, bool(diseased[index]))
        vertices = subject_sequence(template, row, disease, frames, rng, shape_noise, jitter_mm)
        labels = {"disease": int(diseased[index]), "disease_kind": disease["kind"], "deviation": disease["severity"],
                  **phenotypes(rng, row, disease["severity"])}
        yield split, subject, row, MeshSequence(vertices, template.faces, template.edges), labels
