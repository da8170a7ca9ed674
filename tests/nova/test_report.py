"""nova-report in-process: one self-contained page, byte-stable, reading slices only from declared folders."""
import json
import shutil

import pytest

from stages.common.stage import UndeclaredPathError
from stages.nova.report import report
from tests.helpers import step_context
from tests.nova.tiny import TINY, file_hashes


def test_the_page_has_figures_tables_and_published_numbers(tiny_run, tiny_rerun):
    html = (tiny_run.data / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 1 + TINY["nova.report.examples"]  # the PR curve and the examples
    assert "(synthetic smoke run)" in html and "Published reference points" in html and "rare pathologies" in html
    assert tiny_run.context("report").tracker.artifacts[-1].name == "index.html"
    assert file_hashes(tiny_run.data / "report") == file_hashes(tiny_rerun.data / "report")


def test_slices_are_read_only_from_a_declared_folder(tiny_run, tmp_path):
    shutil.copytree(tiny_run.data, tmp_path / "data" / "nova")
    info = tmp_path / "data" / "nova" / "interim" / "ingest" / "dataset.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "root": str(tmp_path / "elsewhere")}))
    with pytest.raises(UndeclaredPathError, match=r"nova-report reads the benchmark slices in .*elsewhere but none of its deps"):
        report(step_context(report, tmp_path, TINY))


def test_published_numbers_in_our_units_and_the_synthetic_caveat_only_on_synthetic_runs(tiny_run, tmp_path):
    from stages.nova.report import published_rows

    rows = {(r["model"], r["metric"]): r for r in published_rows()}
    assert rows[("Qwen2.5-VL-72B", "mAP@30")]["in our units"] == pytest.approx(0.3766)  # ours: map30 on 0-1
    assert rows[("Gemini 2.0 Flash", "Top-1")]["in our units"] == pytest.approx(0.221)
    assert rows[("Gemini 2.0 Flash", "BLEU-4")]["in our units"] == pytest.approx(1.83)  # BLEU-4 is 0-100 in both
    html = (tiny_run.data / "report" / "index.html").read_text()
    assert "not comparable with a synthetic run" in html and "0.3766" in html
    shutil.copytree(tiny_run.data, tmp_path / "data" / "nova")
    info = tmp_path / "data" / "nova" / "interim" / "ingest" / "dataset.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "source": "/data/nova-real"}))
    report(step_context(report, tmp_path, TINY))
    real = (tmp_path / "data" / "nova" / "report" / "index.html").read_text()
    assert "Published reference points (real NOVA)" in real and "not comparable with a synthetic run" not in real
    assert "(synthetic smoke run)" not in real
