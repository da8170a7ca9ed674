"""ct_fairness-report: one page with the gap tables, figures and examples asked for; the same bytes on a rerun."""
import re
import shutil

import pandas as pd

from stages.ct_fairness.report import report
from tests.ct_fairness.cases import TINY
from tests.helpers import run_step


def copy_inputs(tiny_study, root):
    data = root / "data" / "ct_fairness"
    shutil.copytree(tiny_study.data / "evaluation", data / "evaluation")
    shutil.copytree(tiny_study.data / "metrics", data / "metrics")
    return data


def test_the_page_holds_every_section_and_the_examples_asked_for(tiny_study, tmp_path):
    html = (tiny_study.data / "report" / "index.html").read_text()
    for heading in ("Dice performance gaps", "Population gap against the cross-dataset gap", "Synthetic truth against the measured gaps",
                    "Organ-volume diversity and generalisation", "HD95 performance gaps", "Example segmentations", "Training"):
        assert f"<h2>{heading}</h2>" in html
    gaps = pd.read_csv(tiny_study.data / "evaluation" / "gaps.csv")
    assert html.count("<tr>") >= len(gaps[gaps.metric == "dice"]) // 2     # one gap-table row per (experiment, organ)
    examples = re.findall(r"<figcaption>([^<]*): same-group vs other-group model</figcaption>", html)
    assert len(examples) == TINY.get("ct_fairness.report.examples", 4) == tiny_study.metrics["ct_fairness-report"]["example_figures"]
    data = copy_inputs(tiny_study, tmp_path)
    run_step(report, tmp_path, {**TINY, "ct_fairness.report.examples": 0})
    assert "same-group vs other-group model</figcaption>" not in (data / "report" / "index.html").read_text()


def test_a_rerun_writes_the_same_bytes(tiny_study, tmp_path):
    data = copy_inputs(tiny_study, tmp_path)
    run_step(report, tmp_path, TINY)
    assert (data / "report" / "index.html").read_bytes() == (tiny_study.data / "report" / "index.html").read_bytes()
