"""The synthetic datasets: balanced demographics, the real formats, the same bytes for a seed."""
import numpy as np
import pandas as pd

from stages.ct_fairness.datasets import AMOS_META, list_amos, list_totalsegmentator
from stages.ct_fairness.organs import ORGANS
from stages.ct_fairness.phantom import Effects, Scanner
from stages.ct_fairness.synthetic import TRUTH_CSV, TRUTH_JSON, draw_demographics, group_counts, write_synthetic_datasets
from tests.ct_fairness.cases import file_digests

COARSE = Scanner(spacing=(10.0, 10.0, 10.0), fov_mm=(340.0, 260.0, 230.0))


def test_demographics_are_balanced():
    assert group_counts(24, [0.42, 0.16, 0.42]) == [10, 4, 10]
    assert sum(group_counts(7, [1, 1, 1])) == 7
    people = draw_demographics(24, [(20, 40), (41, 64), (65, 88)], [0.42, 0.16, 0.42], np.random.default_rng(0))
    sexes = [s for s, _ in people]
    ages = np.array([a for _, a in people])
    assert sexes.count("F") == sexes.count("M") == 12
    assert (ages <= 40).sum() == 10 and (ages >= 65).sum() == 10
    odd = draw_demographics(10, [(20, 40), (65, 88)], [0.5, 0.5], np.random.default_rng(0))
    assert [s for s, _ in odd].count("F") == 5


def test_synthetic_datasets_are_real_format_and_deterministic(tmp_path):
    scanners = {"totalsegmentator": COARSE, "amos": Scanner(spacing=(9.0, 9.0, 12.0), fov_mm=(340.0, 260.0, 230.0), offset_hu=30.0)}
    args = (4, scanners, Effects(), [(20, 40), (65, 88)], [0.5, 0.5], 5)
    truth = write_synthetic_datasets(tmp_path / "a", *args)
    write_synthetic_datasets(tmp_path / "b", *args)
    assert file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    assert (tmp_path / "a" / TRUTH_JSON).exists() and len(pd.read_csv(tmp_path / "a" / TRUTH_CSV)) == 8
    assert list(truth.columns[:4]) == ["case", "dataset", "sex", "age"]
    meta = (tmp_path / "a" / "totalsegmentator" / "meta.csv").read_text().splitlines()
    assert meta[0] == "image_id;age;gender;institute;study_type;split" and meta[1].split(";")[2] in ("f", "m")
    amos_meta = pd.read_csv(tmp_path / "a" / "amos" / AMOS_META, dtype=str)
    assert amos_meta["Patient's Age"].str.fullmatch(r"\d{3}Y").all() and set(amos_meta["Patient's Sex"]) <= {"F", "M"}
    ts_records, ts_problems = list_totalsegmentator(tmp_path / "a" / "totalsegmentator")
    amos_records, amos_problems = list_amos(tmp_path / "a" / "amos", 500)
    assert len(ts_records) == len(amos_records) == 4 and ts_problems == amos_problems == []
    for organ in ORGANS:
        assert truth[f"hu_{organ}"].notna().all()
