"""ct_fairness-ingest: params checked with the key named, the manifest against the files, the same bytes
for a seed, and bad cases fatal by default (naming the case) or quarantined under `skip`."""
import dataclasses
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.common.params import ParamsError, validate_step
from stages.common.pipeline import PipelineError
from stages.ct_fairness.ingest import IngestParams, ingest
from stages.ct_fairness.organs import ORGAN_IDS, amos_to_organ_table
from stages.ct_fairness.phantom import Effects, Scanner
from stages.ct_fairness.synthetic import write_synthetic_datasets
from tests.ct_fairness.cases import TINY, damaged_datasets, file_digests
from tests.helpers import repo_params, run_module, run_step, set_params, step_context, with_overrides


def validate(overrides):
    return validate_step("ct_fairness", "ingest", IngestParams, with_overrides(repo_params(), overrides))[1]


@pytest.mark.parametrize("overrides, message", [
    ({"ct_fairness.ingest.source.amos": "/data/amos22"}, r"ct_fairness.ingest.source: .*both datasets as synthetic or both as folders"),
    ({"ct_fairness.ingest.effects.old_hu_shift": {"liver": 0.0, "kidney_right": -15.0, "kidney_left": -15.0}},
     r"ct_fairness.ingest.effects: .*old_hu_shift: missing organ\(s\) \['pancreas'\]"),
    ({"ct_fairness.ingest.effects.female_volume_scale.spleen": 0.9}, r"ct_fairness.ingest.effects: .*unknown organ\(s\) \['spleen'\]"),
    ({"ct_fairness.ingest.effects.ageing_onset": 80.0}, r"ct_fairness.ingest.effects: .*must be above ageing_onset"),
    ({"ct_fairness.ingest.scanners.amos": {"spacing": [6.0, 6.0, 9.0], "fov_mm": [348.0, 264.0, 207.0]}},
     r"ct_fairness.ingest.scanners.amos: .*missing key\(s\) \['noise_hu', 'offset_hu', 'blur_mm', 'enhancement'\]"),
    ({"ct_fairness.ingest.scanners.amos.spacing": [6.0, 0.0, 9.0]}, r"ct_fairness.ingest.scanners: .*amos: spacing and fov_mm must be positive"),
    ({"ct_fairness.ingest.totalseg_merged_labels": {"liver": 1, "pancreas": 1}}, r"ct_fairness.ingest.totalseg_merged_labels: .*distinct"),
    ({"ct_fairness.ingest.age_weights": [0.5, 0.5]}, r"ct_fairness.ingest: .*one weight per age range \(3\), got 2"),
    ({"ct_fairness.ingest.age_limits": [30.0, 120.0]}, r"ct_fairness.ingest: .*age_ranges: \[20, 40\] must be .* inside age_limits"),
])
def test_bad_params_fail_naming_the_key(overrides, message):
    with pytest.raises(ParamsError, match=message):
        validate(overrides)


def test_the_params_leave_nothing_to_defaults():
    """Every value comes from params.yaml: leaving a key out is an error naming it, not a silent default."""
    document = repo_params()
    del document["ct_fairness"]["ingest"]["effects"]["shape_jitter"]
    del document["ct_fairness"]["ingest"]["amos_max_ct_id"]
    with pytest.raises(ParamsError) as error:
        validate_step("ct_fairness", "ingest", IngestParams, document)
    assert "ct_fairness.ingest.amos_max_ct_id: Field required" in str(error.value)
    assert "ct_fairness.ingest.effects: Value error, missing key(s) ['shape_jitter']" in str(error.value)


def test_manifest_agrees_with_the_files_on_disk(tiny_study):
    """Organ volumes, shapes and demographics in the manifest, recomputed from the NIfTI files with nibabel."""
    raw, ingest_dir = tiny_study.data / "raw", tiny_study.data / "interim" / "ingest"
    manifest = pd.read_csv(ingest_dir / "manifest.csv", dtype={"case": str})
    truth = pd.read_csv(ingest_dir / "synthetic_truth.csv", dtype={"case": str}).set_index("case")
    assert len(manifest) == 20 and manifest.groupby("dataset").size().to_dict() == {"amos": 10, "totalsegmentator": 10}
    assert (manifest.set_index("case")[["sex", "age"]] == truth.loc[manifest.case, ["sex", "age"]]).all().all()
    ts = manifest[manifest.dataset == "totalsegmentator"].iloc[0]
    liver = nib.load(str(raw / "totalsegmentator" / ts.label_path / "liver.nii.gz"))
    voxel_ml = float(np.prod(liver.header.get_zooms())) / 1000
    assert ts.volume_ml_liver == pytest.approx(np.asarray(liver.dataobj).sum() * voxel_ml)
    amos = manifest[manifest.dataset == "amos"].iloc[0]
    label = nib.load(str(raw / "amos" / amos.label_path))
    voxel_ml = float(np.prod(label.header.get_zooms())) / 1000
    amos_ids = {organ: next(a for a, o in amos_to_organ_table().items() if o == ORGAN_IDS[organ]) for organ in ORGAN_IDS}
    for organ, amos_id in amos_ids.items():
        assert amos[f"volume_ml_{organ}"] == pytest.approx((np.asarray(label.dataobj) == amos_id).sum() * voxel_ml)
    assert (amos.shape_x, amos.shape_y, amos.shape_z) == label.shape
    info = json.loads((ingest_dir / "dataset.json").read_text())
    assert info["source"] == "synthetic" and info["truth"] == "synthetic_truth.csv"
    assert info["roots"] == {name: f"data/ct_fairness/raw/{name}" for name in ("totalsegmentator", "amos")}
    assert json.loads((raw / "SOURCE.json").read_text()) == {"totalsegmentator": "synthetic", "amos": "synthetic"}
    assert tiny_study.metrics["ct_fairness-ingest"]["cases"] == 20
    assert tiny_study.contexts["ct_fairness-ingest"].tracker.metrics["quarantined"] == 0


def test_the_same_seed_writes_the_same_bytes(tiny_study, tmp_path):
    """A second ingest into another folder: every file (NIfTI, tables, validation result) is byte-identical."""
    run_step(ingest, tmp_path, TINY)
    again = tmp_path / "data" / "ct_fairness"
    for folder in ("raw", "interim/ingest"):
        assert file_digests(tiny_study.data / folder) == file_digests(again / folder), folder
    validation = "interim/manifest_validation.json"
    assert (tiny_study.data / validation).read_bytes() == (again / validation).read_bytes()
    assert sum(name.endswith(".nii.gz") for name in file_digests(again / "raw")) == 10 * (1 + 8) + 10 * 2


@pytest.fixture()
def damaged(tmp_path):
    return damaged_datasets(tmp_path / "real")


def test_a_bad_case_stops_the_stage_with_one_line_naming_it(project_copy, damaged):
    set_params(project_copy, {"ct_fairness.ingest.source": damaged})
    result = run_module(project_copy, "stages.ct_fairness.ingest")
    assert result.returncode == 1
    assert "error: ct_fairness-ingest: totalsegmentator case s0009: listed in meta.csv but has no image/label files" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project_copy / "data" / "ct_fairness" / "interim" / "ingest").exists()


def test_skip_quarantines_each_bad_case_and_keeps_the_rest(tmp_path, damaged):
    ctx, metrics = run_step(ingest, tmp_path, {"ct_fairness.ingest.source": damaged, "common.on_bad_input": "skip"})
    out = tmp_path / "data" / "ct_fairness" / "interim" / "ingest"
    problems = {entry["item"]: entry["problem"] for entry in json.loads((out / "quarantine.json").read_text())["entries"]}
    assert set(problems) == {"totalsegmentator/s0009", "totalsegmentator/s0002", "amos/amos_0003", "amos/amos_0004"}
    assert "image shape (28, 21, 19) differs from label shape (5, 5, 5)" in problems["totalsegmentator/s0002"]
    assert "unknown label value(s) [17]" in problems["amos/amos_0003"]
    assert "age 'unknown'" in problems["amos/amos_0004"]
    assert sorted(pd.read_csv(out / "manifest.csv").case) == ["amos_0001", "amos_0002", "s0001", "s0003", "s0004"]
    assert metrics["cases"] == 5 and ctx.tracker.metrics["quarantined"] == 4
    info = json.loads((out / "dataset.json").read_text())
    inside_repo = {name: f"real/{name}" for name in damaged}              # the sources lie inside tmp_path, the repo here
    assert info["source"] == "real" and info["truth"] is None and info["roots"] == inside_repo
    assert json.loads((tmp_path / "data" / "ct_fairness" / "raw" / "SOURCE.json").read_text()) == inside_repo
    assert not (out / "synthetic_truth.csv").exists()


def test_a_real_source_must_exist_be_a_folder_and_be_a_dependency(tmp_path, damaged):
    with pytest.raises(BadInputError, match=r"ct_fairness.ingest.source.amos: .*does not exist"):
        run_step(ingest, tmp_path, {"ct_fairness.ingest.source": {**damaged, "amos": str(tmp_path / "missing")}})
    meta = str(tmp_path / "real" / "amos" / "labeled_data_meta_0000_0599.csv")
    with pytest.raises(BadInputError, match=r"ct_fairness.ingest.source.amos: .* is not a folder"):
        run_step(ingest, tmp_path, {"ct_fairness.ingest.source": {**damaged, "amos": meta}})
    ctx = step_context(ingest, tmp_path, {"ct_fairness.ingest.source": damaged})
    ctx.spec = dataclasses.replace(ctx.spec, deps=tuple(d for d in ctx.spec.deps if d != damaged["amos"]))
    with pytest.raises(PipelineError, match=r"does not list \$\{ct_fairness.ingest.source.amos\} among its deps"):
        ingest(ctx)


def test_an_age_of_150_and_nan_voxels_are_quarantined_per_case(tmp_path):
    """Issue 19 items 7 and 8: an age outside age_limits (meta.csv row) and a NaN voxel in a CT volume are
    item-level problems: refused by name in fatal mode, quarantined with the file named in skip mode."""
    scanner = Scanner(spacing=(12.0, 12.0, 12.0), fov_mm=(336.0, 252.0, 224.0))
    write_synthetic_datasets(tmp_path / "real", 4, {"totalsegmentator": scanner, "amos": scanner}, Effects(), [(20, 40), (65, 88)], [0.5, 0.5], 0)
    ts, amos = tmp_path / "real" / "totalsegmentator", tmp_path / "real" / "amos"
    meta = (ts / "meta.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(meta) if line.startswith("s0002;"))
    fields = meta[row].split(";")
    meta[row] = ";".join([fields[0], "150", *fields[2:]])
    (ts / "meta.csv").write_text("\n".join(meta) + "\n")
    image = nib.load(str(amos / "imagesTr" / "amos_0003.nii.gz"))
    values = np.asarray(image.dataobj).astype(np.float32)
    values[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(values, image.affine), str(amos / "imagesTr" / "amos_0003.nii.gz"))
    source = {"ct_fairness.ingest.source": {"totalsegmentator": str(ts), "amos": str(amos)}}
    with pytest.raises(BadInputError, match=r"totalsegmentator case s0002: age 150 in meta.csv is outside"):
        run_step(ingest, tmp_path / "fatal", source)
    run_step(ingest, tmp_path, {**source, "common.on_bad_input": "skip"})
    out = tmp_path / "data" / "ct_fairness" / "interim" / "ingest"
    problems = {entry["item"]: entry["problem"] for entry in json.loads((out / "quarantine.json").read_text())["entries"]}
    assert set(problems) == {"totalsegmentator/s0002", "amos/amos_0003"}
    assert "age 150 in meta.csv is outside ct_fairness.ingest.age_limits [0, 120]" in problems["totalsegmentator/s0002"]
    assert "amos_0003.nii.gz" in problems["amos/amos_0003"] and "NaN" in problems["amos/amos_0003"], problems
    assert sorted(pd.read_csv(out / "manifest.csv", dtype={"case": str}).case) == ["amos_0001", "amos_0002", "amos_0004",
                                                                                  "s0001", "s0003", "s0004"]
