"""grounding's steps in-process: the synthetic set, bad input (fatal and skip), params checks, train to report."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.common.badinput import BadInputError
from stages.common.io import FormatError, read_png, write_png
from stages.common.params import ParamsError
from stages.common.validation import ManifestValidationError, validate_manifest
from stages.grounding.evaluate import evaluate
from stages.grounding.ingest import ingest, manifest_expectations, with_box_checks
from stages.grounding.report import report
from stages.grounding.train import train
from tests.grounding.tiny import TINY
from tests.helpers import copy_project, run_module, run_step, set_params, step_context

REAL_CLASSES = {"grounding.ingest.seen_classes": ["cardiomegaly", "nodule or mass"],
                "grounding.ingest.unseen_classes": ["edema"]}


def write_real_source(folder, rows, knowledge=None):
    """A VinDr-style folder in AG-KD's layout: 64 px PNGs, the annotation CSV, the knowledge YAML."""
    (folder / "images").mkdir(parents=True)
    for image_id in ("img1", "img2", "img3"):
        write_png(folder / "images" / f"{image_id}.png", np.full((64, 64), 40, dtype=np.uint8))
    lines = ["image_id,class_name,bboxes,split"] + [f'{i},{c},"{b}",{s}' for i, c, b, s in rows]
    (folder / "annotations.csv").write_text("\n".join(lines) + "\n")
    knowledge = knowledge if knowledge is not None else {
        "Cardiomegaly": "an enlarged heart.", "Nodule or Mass": "a round opacity.", "Edema": "hazy opacity at the bases."}
    (folder / "knowledge.yaml").write_text(yaml.safe_dump(knowledge))
    return {"grounding.ingest.source": str(folder), **REAL_CLASSES}


GOOD_ROWS = [("img1", "Cardiomegaly", "[[10, 10, 40, 30]]", "train"), ("img2", "Nodule or Mass", "[[1, 1, 5, 5], [20, 20, 30, 30]]", "train"),
             ("img3", "Edema", "[[0, 0, 64, 64]]", "test")]


def test_synthetic_ingest_holds_unseen_classes_out_of_training_and_draws_what_it_labels(tmp_path):
    ctx, metrics = run_step(ingest, tmp_path, TINY)
    data = tmp_path / "data" / "grounding"
    queries = pd.read_csv(data / "interim/ingest/queries.csv")
    params = ctx.params
    assert set(queries.loc[queries.split != "test", "class_name"]) <= set(params.seen_classes)
    assert len(queries) == 2 * 18 and metrics["images"] == 18
    manifest = pd.read_csv(data / "interim/ingest/manifest.csv")
    for box in manifest.itertuples():
        pixels = read_png(data / "raw" / "images" / f"{box.image_id}.png").astype(float)
        assert pixels.shape == (512, 512)
        x1, y1, x2, y2 = (int(round(v)) for v in (box.x_min, box.y_min, box.x_max, box.y_max))
        inside = pixels[y1:y2, x1:x2].mean()
        ring = np.concatenate([pixels[max(y1 - 12, 0):y1, x1:x2].ravel(), pixels[y2:y2 + 12, x1:x2].ravel()]).mean()
        density = params.synthetic.classes[box.class_name].density
        if density == "bright":
            assert inside > ring + 10, (box.image_id, box.class_name)
        elif density == "dark":
            assert inside < ring - 5, (box.image_id, box.class_name)
    knowledge = json.loads((data / "interim/ingest/dataset.json").read_text())["knowledge"]
    assert knowledge["brelk"] == "a small bright round opacity at the lung apex."
    assert json.loads((data / "interim/manifest_validation.json").read_text())["success"] is True


def test_a_real_folder_reads_through_the_same_readers(tmp_path):
    overrides = write_real_source(tmp_path / "vindr", GOOD_ROWS)
    run_step(ingest, tmp_path, overrides)
    queries = pd.read_csv(tmp_path / "data/grounding/interim/ingest/queries.csv")
    assert list(queries.class_name) == ["cardiomegaly", "nodule or mass", "edema"]
    assert list(queries.n_boxes) == [1, 2, 1] and list(queries.seen) == [True, True, False]


@pytest.mark.parametrize(("rows", "knowledge", "message"), [
    ([*GOOD_ROWS, ("img1", "Edema", "[[50, 50, 70, 60]]", "test")], None, r"row 5: box .* outside the 64 x 64 image img1"),
    ([*GOOD_ROWS, ("img1", "Edema", "[[50, 50, 50, 60]]", "test")], None, r"row 5: box .* non-positive size"),
    ([*GOOD_ROWS, ("img2", "Pneumothorax", "[[1, 1, 2, 2]]", "test")], None, r"row 5: class 'pneumothorax' is missing from the knowledge YAML"),
    ([*GOOD_ROWS, ("img4", "Edema", "[[1, 1, 2, 2]]", "test")], None, r"img4.png: file not found"),
])
def test_bad_rows_are_fatal_naming_the_row_and_quarantined_under_skip(tmp_path, rows, knowledge, message):
    overrides = write_real_source(tmp_path / "vindr", rows, knowledge)
    with pytest.raises((BadInputError, FormatError), match=message):
        run_step(ingest, tmp_path / "fatal", overrides)
    assert not (tmp_path / "fatal/data/grounding/interim/ingest").exists()
    run_step(ingest, tmp_path / "skip", {**overrides, "common.on_bad_input": "skip"})
    out = tmp_path / "skip/data/grounding/interim/ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and len(pd.read_csv(out / "queries.csv")) == 3


def test_unreadable_png_missing_column_and_bad_yaml_stop_the_stage(tmp_path):
    overrides = write_real_source(tmp_path / "a", GOOD_ROWS)
    (tmp_path / "a/images/img2.png").write_bytes(b"garbage")
    with pytest.raises(FormatError, match=r"img2.png: not a readable PNG"):
        run_step(ingest, tmp_path / "a", overrides)
    overrides = write_real_source(tmp_path / "b", GOOD_ROWS)
    (tmp_path / "b/annotations.csv").write_text("image_id,class_name,split\nimg1,Edema,test\n")
    with pytest.raises(FormatError, match=r"annotations.csv: missing column bboxes \(AG-KD layout\) or x_min"):
        run_step(ingest, tmp_path / "b", overrides)
    overrides = write_real_source(tmp_path / "c", GOOD_ROWS, knowledge=["edema"])
    with pytest.raises(FormatError, match=r"knowledge.yaml: must be a non-empty mapping"):
        run_step(ingest, tmp_path / "c", overrides)


def test_a_fatal_stage_exits_1_with_one_line(tmp_path):
    project = copy_project(tmp_path / "project")
    overrides = write_real_source(tmp_path / "vindr", [*GOOD_ROWS, ("img1", "Edema", "[[50, 50, 70, 60]]", "test")])
    set_params(project, overrides)
    result = run_module(project, "stages.grounding.ingest")
    assert result.returncode == 1 and "row 5" in result.stderr and "Traceback" not in result.stderr


def test_params_refuse_unseen_attributes_never_seen(tmp_path):
    classes = yaml.safe_load(open("params.yaml"))["grounding"]["ingest"]["synthetic"]["classes"]
    classes["drimp"] = {"density": "dark", "shape": "round", "location": "cardiac", "size": "large"}
    seen = ["brelk", "tovin"]
    with pytest.raises(ParamsError, match=r"unseen class 'drimp': its location 'cardiac' appears in no seen class"):
        step_context(ingest, tmp_path, {"grounding.ingest.seen_classes": seen, "grounding.ingest.unseen_classes": ["drimp"],
                                        "grounding.ingest.synthetic.classes": classes})
    with pytest.raises(ParamsError, match="share"):
        step_context(ingest, tmp_path, {"grounding.ingest.unseen_classes": ["brelk"]})


def test_expectations_catch_a_box_outside_the_image(tmp_path):
    manifest = with_box_checks(pd.DataFrame([
        {"image_id": "a", "class_name": "edema", "split": "test", "x_min": 0, "y_min": 0, "x_max": 70, "y_max": 10,
         "width": 64, "height": 64, "image_present": True}]))
    with pytest.raises(ManifestValidationError, match="right_margin"):
        validate_manifest(manifest, "t", manifest_expectations(["edema"]), tmp_path / "v.json")


def test_train_evaluate_report_chain(tmp_path):
    run_step(ingest, tmp_path, TINY)
    for variant in ("descriptions", "names", "descriptions_fraction"):
        _, metrics = run_step(train, tmp_path, TINY, item=variant)
        assert np.isfinite(metrics["final_loss"])
    data = tmp_path / "data/grounding"
    assert json.loads((data / "metrics/train_descriptions_fraction.json").read_text())["training_samples"] == 5  # 25% of 20
    _, metrics = run_step(evaluate, tmp_path, TINY)
    scores = pd.read_csv(data / "evaluation/scores.csv")
    assert {"descriptions", "names", "descriptions_fraction", "chance"} == set(scores.variant)
    assert ((scores[["map50", "map75", "map50_95"]] >= 0) & (scores[["map50", "map75", "map50_95"]] <= 1)).all().all()
    claims = json.loads((data / "metrics/claims.json").read_text())
    assert sorted(claims["claims"]) == ["fraction_matches_names", "seen_descriptions_beat_names",
                                        "unseen_descriptions_above_chance", "unseen_names_at_chance"]
    run_step(report, tmp_path, TINY)
    html = (data / "report/index.html").read_text()
    assert html.index("Claims") < html.index("Examples") and "data:image/png;base64," in html and "published" in html
