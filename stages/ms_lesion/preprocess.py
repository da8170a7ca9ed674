"""ms_lesion-preprocess: brain masks, common spacing, a fixed crop, z-scores, a WM map, splits per dataset.

Every case becomes ``interim/preprocessed/<dataset>__<subject>.npz`` holding ``scans`` (t1, t2;
a cross-sectional scan twice), ``brain``, ``white_matter``, ``labels`` with ``label_known``
(which of all-t1, all-t2, new, vanishing the layout gives) and, for synthetic data, ``truth``
with ``truth_known`` (every label, for scoring tasks a dataset's layout lacks).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.atomic import atomic_directory
from stages.common.io import read_table, write_npz, write_table
from stages.common.params import StrictModel
from stages.common.paths import from_portable
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ms_lesion import layouts, synthetic, volumes


class PreprocessParams(StrictModel):
    spacing_mm: float = Field(gt=0)
    shape: tuple[int, int, int]
    validation_subjects: int = Field(ge=0)
    test_subjects: int = Field(ge=1)


def case_from_row(row: pd.Series, repo: Path) -> layouts.Case:
    """The :class:`layouts.Case` a manifest row describes."""
    def path(text) -> Path | None:
        return from_portable(text, repo) if isinstance(text, str) and text else None

    scans = (path(row.scan_t1),) if row.time_points == 1 else (path(row.scan_t1), path(row.scan_t2))
    labels = {kind: path(row[f"label_{kind}"]) for kind in layouts.LABEL_KINDS if path(row[f"label_{kind}"])}
    derived = tuple(kind for kind in layouts.LABEL_KINDS if row[f"has_{kind}"] and kind not in labels)
    return layouts.Case(row.dataset, row.layout, row.subject, scans, labels, derived, path(row.brain_mask))


def assign_splits(manifest: pd.DataFrame, validation: int, test: int) -> pd.Series:
    """Per dataset, subjects sorted: the last ``test`` are test, the ``validation`` before them validation."""
    split = pd.Series("train", index=manifest.index)
    for dataset, rows in manifest.groupby("dataset"):
        ordered = rows.sort_values("subject").index.tolist()
        if len(ordered) <= validation + test:
            raise ValueError(f"dataset {dataset}: {len(ordered)} subjects, need more than validation + test = {validation + test}")
        split[ordered[len(ordered) - test:]] = "test"
        split[ordered[len(ordered) - test - validation: len(ordered) - test]] = "val"
    return split


def prepare(loaded: layouts.LoadedCase, truth: dict[str, np.ndarray] | None, params: PreprocessParams,
            template_wm: np.ndarray) -> dict[str, np.ndarray]:
    """One case on the common grid: scans, brain, WM map, labels (and truth) as arrays."""
    brain = loaded.brain_mask if loaded.brain_mask is not None else volumes.otsu_brain_mask(loaded.scans[0])

    def grid(volume: np.ndarray, order: int, centre) -> np.ndarray:
        return volumes.centre_crop_or_pad(volumes.resample(volume, loaded.spacing, params.spacing_mm, order), centre, params.shape)

    resampled_brain = volumes.resample(brain.astype(np.uint8), loaded.spacing, params.spacing_mm, 0)
    centre = volumes.brain_centre(resampled_brain)
    brain = grid(brain.astype(np.uint8), 0, centre).astype(bool)
    scans = np.stack([volumes.normalise(grid(scan, 1, centre), brain) for scan in loaded.scans])
    arrays = {
        "scans": scans, "brain": brain.astype(np.uint8),
        "white_matter": volumes.white_matter_prior(template_wm, brain).astype(np.float32),
        "labels": np.stack([grid(loaded.labels[k].astype(np.uint8), 0, centre) if k in loaded.labels
                            else np.zeros(params.shape, np.uint8) for k in layouts.LABEL_KINDS]),
        "label_known": np.array([k in loaded.labels for k in layouts.LABEL_KINDS]),
        "spacing": np.full(3, params.spacing_mm, dtype=np.float32),
    }
    if truth is not None:
        arrays["truth"] = np.stack([grid(truth[k].astype(np.uint8), 0, centre) for k in layouts.LABEL_KINDS])
    else:  # real data: the layout's own labels are all the truth there is
        arrays["truth"] = arrays["labels"]
    arrays["truth_known"] = np.array([True] * 4) if truth is not None else arrays["label_known"]
    return arrays


def preprocess(ctx: StageContext[PreprocessParams]) -> Metrics:
    p = ctx.params
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), ("dataset", "subject", "layout", "scan_t1", "truth"),
                          keep_default_na=False)
    ctx.dep("raw")
    template_wm = synthetic.load_template(p.spacing_mm).white_matter
    manifest["split"] = assign_splits(manifest, p.validation_subjects, p.test_subjects)
    rows = []
    with atomic_directory(ctx.out("interim/preprocessed")) as staging:
        for row in progress(list(manifest.itertuples(index=False)), "preprocessing", len(manifest)):
            series = pd.Series(row._asdict())
            case = case_from_row(series, ctx.root)
            loaded = layouts.load_case(case)  # ingest checked (or quarantined) every case already
            truth = None
            if series.truth:
                folder = from_portable(series.truth, ctx.root)
                truth = {k: layouts.read_binary(folder / f"{k}.nii.gz", case.subject)[0] for k in layouts.LABEL_KINDS}
            arrays = prepare(loaded, truth, p, template_wm)
            name = f"{case.dataset}__{case.subject}.npz"
            write_npz(staging / name, arrays)
            rows.append({"case_id": f"{case.dataset}/{case.subject}", "dataset": case.dataset, "subject": case.subject,
                         "split": series.split, "file": name, "longitudinal": bool(series.longitudinal),
                         **{f"label_{k}": bool(v) for k, v in zip(layouts.LABEL_KINDS, arrays["label_known"])},
                         **{f"truth_{k}": bool(v) for k, v in zip(layouts.LABEL_KINDS, arrays["truth_known"])},
                         "lesion_voxels_t2": int(arrays["truth"][1].sum())})
    with atomic_directory(ctx.out("interim/splits")) as staging:
        write_table(staging / "splits.csv", pd.DataFrame(rows))
    splits = pd.DataFrame(rows)
    return {f"cases_{s}": int((splits.split == s).sum()) for s in ("train", "val", "test")}


if __name__ == "__main__":
    run_stage(preprocess)
