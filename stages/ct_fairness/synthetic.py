"""The synthetic default: two datasets of abdominal phantoms written in their real formats.

``totalsegmentator/`` and ``amos/`` differ in scanner (spacing, field of view, enhancement,
offset, blur, noise, stored orientation); within each, anatomy depends on sex and age by the
:class:`~stages.ct_fairness.phantom.Effects`. The truth (effects, scanners, and each case's
systematic organ volume scale and attenuation) is written beside the datasets, never inside them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.atomic import atomic_path, write_json
from stages.common.io import write_table
from stages.common.runtime import progress
from stages.ct_fairness.datasets import (
    AMOS,
    AMOS_AGE,
    AMOS_META,
    AMOS_SEX,
    TOTALSEG,
    TOTALSEG_META,
    write_amos_case,
    write_totalsegmentator_case,
)
from stages.ct_fairness.organs import AMOS_CLASSES, ORGANS
from stages.ct_fairness.phantom import Effects, Scanner, organ_hu_truth, render_phantom, subject_anatomy

TRUTH_JSON = "synthetic_truth.json"
TRUTH_CSV = "synthetic_truth.csv"
# Structures the phantom draws; TotalSegmentator-style cases get one mask file for each.
DRAWN_STRUCTURES = {amos_id: name for amos_id, name in AMOS_CLASSES.items()
                    if name in ("spleen", "kidney_right", "kidney_left", "liver", "stomach", "aorta", "postcava", "pancreas")}


def group_counts(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` by ``weights`` with the largest-remainder rule (counts sum to ``total``)."""
    shares = np.asarray(weights, dtype=float) / float(np.sum(weights)) * total
    counts = np.floor(shares).astype(int)
    for index in np.argsort(-(shares - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    return counts.tolist()


def draw_demographics(total: int, age_ranges: Sequence[Sequence[float]], weights: Sequence[float],
                      rng: np.random.Generator) -> list[tuple[str, int]]:
    """(sex, age) per case: age bands in the given proportions, sexes balanced within each band (and overall
    to within one), shuffled."""
    people = []
    for band, ((low, high), count) in enumerate(zip(age_ranges, group_counts(total, weights), strict=True)):
        first, second = ("F", "M") if band % 2 == 0 else ("M", "F")  # odd bands start with the other sex
        sexes = ([first, second] * count)[:count]
        rng.shuffle(sexes)
        people += [(sex, int(rng.integers(int(low), int(high) + 1))) for sex in sexes]
    order = rng.permutation(len(people))
    return [people[i] for i in order]


def truth_row(case: str, dataset: str, anatomy, scanner: Scanner) -> dict:
    row = {"case": case, "dataset": dataset, "sex": anatomy.sex, "age": anatomy.age,
           "visceral_fat_fraction": anatomy.visceral_fat_fraction, "subcutaneous_fat_mm": anatomy.subcutaneous_fat_mm,
           "noise_hu": scanner.noise_hu, "offset_hu": scanner.offset_hu, "enhancement": scanner.enhancement,
           "blur_mm": scanner.blur_mm}
    hu = organ_hu_truth(anatomy, scanner)
    for organ in ORGANS:
        row[f"volume_scale_{organ}"] = anatomy.systematic_volume_scale[organ]
        row[f"hu_{organ}"] = hu[organ]
    return row


def write_synthetic_datasets(root: Path, cases_per_dataset: int, scanners: Mapping[str, Scanner], effects: Effects,
                             age_ranges: Sequence[Sequence[float]], age_weights: Sequence[float], seed: int) -> pd.DataFrame:
    """Write ``root/totalsegmentator`` and ``root/amos`` in their real formats; return the truth table."""
    rows = []
    for dataset_index, dataset in enumerate((TOTALSEG, AMOS)):
        scanner = scanners[dataset]
        rng = np.random.default_rng([seed, dataset_index])
        people = draw_demographics(cases_per_dataset, age_ranges, age_weights, rng)
        meta = []
        for index, (sex, age) in enumerate(progress(people, f"synthesising {dataset}", len(people))):
            anatomy = subject_anatomy(sex, age, effects, rng)
            image, label = render_phantom(anatomy, scanner)
            if dataset == TOTALSEG:
                case = f"s{index + 1:04d}"
                write_totalsegmentator_case(root / dataset, case, image, label, scanner.spacing, DRAWN_STRUCTURES)
                meta.append({"image_id": case, "age": age, "gender": sex.lower(), "institute": "synthetic-A",
                             "study_type": "ct abdomen-pelvis", "split": "train"})
            else:
                case = f"amos_{index + 1:04d}"
                write_amos_case(root / dataset, case, image, label, scanner.spacing)
                meta.append({"amos_id": index + 1, "Patient's Birth Date": "", AMOS_AGE: f"{age:03d}Y", AMOS_SEX: sex,
                             "Acquisition Date": "20200101", "Manufacturer": "synthetic-B",
                             "Manufacturer's Model Name": "phantom", "Site": "synthetic-B"})
            rows.append(truth_row(case, dataset, anatomy, scanner))
        if dataset == TOTALSEG:
            with atomic_path(root / dataset / TOTALSEG_META) as temporary:
                pd.DataFrame(meta).to_csv(temporary, sep=";", index=False)
        else:
            write_table(root / dataset / AMOS_META, pd.DataFrame(meta))
    truth = pd.DataFrame(rows)
    write_table(root / TRUTH_CSV, truth)
    write_json(root / TRUTH_JSON, {"effects": _plain(asdict(effects)), "scanners": {k: asdict(v) for k, v in scanners.items()},
                                   "organs": list(ORGANS), "cases_csv": TRUTH_CSV})
    return truth


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
