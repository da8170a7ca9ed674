import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from stages.common.report import HtmlReport  # noqa: E402
from stages.common.validation import ManifestValidationError, validate_manifest  # noqa: E402

SUITE = [
    ("expect_column_values_to_be_between", {"column": "age", "min_value": 0, "max_value": 120}),
    ("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["F", "M"]}),
]


def test_passing_suite_saves_its_result(tmp_path):
    manifest = pd.DataFrame({"age": [30, 70], "sex": ["F", "M"]})
    outcome = validate_manifest(manifest, "ok", SUITE, tmp_path / "result.json")
    assert outcome["success"] is True
    assert json.loads((tmp_path / "result.json").read_text())["success"] is True


def test_failed_expectation_is_named_with_offending_values(tmp_path):
    manifest = pd.DataFrame({"age": [30, 170], "sex": ["F", "X"]})
    with pytest.raises(ManifestValidationError) as caught:
        validate_manifest(manifest, "ages", SUITE, tmp_path / "result.json")
    message = str(caught.value)
    assert "expect_column_values_to_be_between" in message and "[170]" in message
    assert "expect_column_values_to_be_in_set" in message and "['X']" in message
    assert json.loads((tmp_path / "result.json").read_text())["success"] is False


def test_report_embeds_figures_and_escapes_tables(tmp_path):
    report = HtmlReport("R & D")
    report.table([{"method": "<b>x</b>", "psnr": 31.234567}], "caption")
    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    report.figure(figure, "a line")
    html = report.write(tmp_path / "r.html").read_text()
    assert "R &amp; D" in html and "&lt;b&gt;x&lt;/b&gt;" in html and "31.23" in html
    assert html.count("data:image/png;base64,") == 1


def test_saved_result_is_identical_for_identical_manifests(tmp_path):
    manifest = pd.DataFrame({"age": [30, 70], "sex": ["F", "M"]})
    validate_manifest(manifest, "ok", SUITE, tmp_path / "a.json")
    validate_manifest(manifest, "ok", SUITE, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_failure_names_the_rows_and_goes_to_the_failure_path(tmp_path):
    manifest = pd.DataFrame({"subject": ["P001", "P002", "P003"], "age": [30, 170, 8], "sex": ["F", "M", "M"]})
    suite = [("expect_column_values_to_be_between", {"column": "age", "min_value": 10, "max_value": 120})]
    with pytest.raises(ManifestValidationError) as caught:
        validate_manifest(manifest, "ages", suite, tmp_path / "out.json", failed_result_path=tmp_path / "log.json")
    assert "in rows (subject) P002, P003" in str(caught.value)
    assert not (tmp_path / "out.json").exists() and json.loads((tmp_path / "log.json").read_text())["success"] is False
