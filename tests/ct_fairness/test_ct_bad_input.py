"""Bad input through the real stages: fatal by default naming the case, quarantined under `skip`,
and a group too small for five folds stops preprocess with the group sizes."""
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd

from stages.ct_fairness.datasets import AMOS_META
from stages.ct_fairness.phantom import Effects, Scanner
from stages.ct_fairness.synthetic import write_synthetic_datasets
from stages.common.io import write_nifti
from tests.conftest import set_params


def run_step(root, step):
    env = {**os.environ, "MEDREPRO_NO_PROGRESS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    return subprocess.run([sys.executable, "-m", f"stages.ct_fairness.{step}"], cwd=root, env=env, capture_output=True, text=True)


def damaged_datasets(folder):
    """Four cases per dataset in the real formats, then one problem per listed case."""
    scanner = Scanner(spacing=(12.0, 12.0, 12.0), fov_mm=(336.0, 252.0, 224.0))
    write_synthetic_datasets(folder, 4, {"totalsegmentator": scanner, "amos": scanner}, Effects(), [(20, 40), (65, 88)], [0.5, 0.5], 0)
    ts, amos = folder / "totalsegmentator", folder / "amos"
    kidney = ts / "s0002" / "segmentations" / "kidney_left.nii.gz"
    write_nifti(kidney, np.zeros((5, 5, 5), dtype=np.uint8), spacing=(12.0, 12.0, 12.0))          # shape mismatch
    with open(ts / "meta.csv", "a") as handle:
        handle.write("s0009;50;f;A;ct;train\n")                                                   # metadata without files
    label = nib.load(str(amos / "labelsTr" / "amos_0003.nii.gz"))
    values = np.asarray(label.dataobj).copy()
    values[0, 0, 0] = 17
    nib.save(nib.Nifti1Image(values, label.affine), str(amos / "labelsTr" / "amos_0003.nii.gz"))  # unknown label value
    meta = pd.read_csv(amos / AMOS_META, dtype=str, keep_default_na=False)
    meta.loc[meta.amos_id == "4", "Patient's Age"] = "unknown"
    meta.to_csv(amos / AMOS_META, index=False)                                                     # unparseable age
    return {"totalsegmentator": str(ts), "amos": str(amos)}


def test_bad_cases_are_fatal_or_quarantined_and_small_groups_stop_preprocess(project_copy, tmp_path):
    sources = damaged_datasets(tmp_path / "real")
    set_params(project_copy, {"ct_fairness.ingest.source": sources})
    out = project_copy / "data" / "ct_fairness" / "interim" / "ingest"

    fatal = run_step(project_copy, "ingest")
    assert fatal.returncode == 1
    assert "error: ct_fairness-ingest: totalsegmentator case s0009: listed in meta.csv but has no image/label files" in fatal.stderr
    assert "Traceback" not in fatal.stderr and not out.exists()

    set_params(project_copy, {"common.on_bad_input": "skip"})
    skipped = run_step(project_copy, "ingest")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    quarantine = json.loads((out / "quarantine.json").read_text())
    problems = {entry["item"]: entry["problem"] for entry in quarantine["entries"]}
    assert set(problems) == {"totalsegmentator/s0009", "totalsegmentator/s0002", "amos/amos_0003", "amos/amos_0004"}
    assert "image shape (28, 21, 19) differs from label shape (5, 5, 5)" in problems["totalsegmentator/s0002"]
    assert "unknown label value(s) [17]" in problems["amos/amos_0003"]
    assert "age 'unknown'" in problems["amos/amos_0004"]
    manifest = pd.read_csv(out / "manifest.csv")
    assert sorted(manifest.case) == ["amos_0001", "amos_0002", "s0001", "s0003", "s0004"]

    small = run_step(project_copy, "preprocess")
    assert small.returncode == 1
    assert "a group is too small for 5 folds (group sizes F=" in small.stderr and "Traceback" not in small.stderr
    assert not (project_copy / "data" / "ct_fairness" / "interim" / "splits").exists()
