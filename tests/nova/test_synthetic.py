"""The synthetic NOVA-like benchmark: real brain template, deterministic, written and read in both layouts."""
import numpy as np
import pytest

from stages.nova.boxes import box_problems
from stages.nova.catalogue import CATALOGUE, frequency_weights
from stages.nova.dataset import decode_slice, read_benchmark, read_csv_layout, read_parquet_layout
from stages.nova.judges import SynonymJudge
from stages.nova.synthetic import generate_benchmark, generate_healthy, load_brain_atlas, write_benchmark


@pytest.fixture(scope="module")
def cases():
    return generate_benchmark(4, 64, seed=3, max_scans_per_case=2)


def test_atlas_is_the_real_mni152_template():
    atlas = load_brain_atlas()
    assert atlas.t1.shape == (197, 233, 189)
    assert 0.15 < atlas.brain.mean() < 0.3  # the brain fills about a fifth of the box
    assert atlas.wm[atlas.brain > 0].mean() > 0.2 and atlas.gm[atlas.brain > 0].mean() > 0.2


def test_same_seed_same_benchmark_other_seed_differs(cases):
    again = generate_benchmark(4, 64, seed=3, max_scans_per_case=2)
    for a, b in zip(cases, again, strict=True):
        assert a.case_id == b.case_id and a.clinical_history == b.clinical_history
        for s, t in zip(a.slices, b.slices, strict=True):
            np.testing.assert_array_equal(s.image, t.image)
            np.testing.assert_array_equal(s.gold, t.gold)
            assert s.caption == t.caption
    other = generate_benchmark(4, 64, seed=4, max_scans_per_case=2)
    assert any(not np.array_equal(a.slices[0].image, b.slices[0].image) for a, b in zip(cases, other, strict=True))


def test_slices_boxes_text_are_consistent(cases):
    judge = SynonymJudge()
    for case in cases:
        assert judge.resolve(case.final_diagnosis) == case.pathology.id  # a name or one of its synonyms
        assert case.clinical_history.endswith(".") and "year-old" in case.clinical_history
        first = case.slices[0]
        assert len(first.gold) >= 1, "the first slice of a case always shows the lesion"
        for item in case.slices:
            assert item.image.dtype == np.uint8 and item.image.shape == (64, 64) and item.image.max() > 100
            assert box_problems(item.gold, 64, 64) == []
            assert (len(item.gold) == 0) == ("no focal abnormality" in item.caption)
            for _, boxes in item.raters:
                assert box_problems(boxes, 64, 64) == []
            assert item.caption.startswith(item.plane.capitalize())


def test_long_tail_and_healthy_slices():
    weights = frequency_weights(len(CATALOGUE))
    assert weights.sum() == pytest.approx(1.0) and weights[0] > 10 * weights[-1]
    healthy = generate_healthy(3, 48, seed=0)
    assert [h[0] for h in healthy] == ["healthy_0001.png", "healthy_0002.png", "healthy_0003.png"]
    assert {h[2] for h in healthy} == {"axial", "coronal", "sagittal"}


def test_both_layouts_are_written_and_read_back_identically(cases, tmp_path):
    write_benchmark(tmp_path, cases)
    for name in ("captions.csv", "case_metadata.csv", "bboxes_gold.csv", "data/nova-v1.parquet"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "images" / cases[0].slices[0].filename).is_file()
    csv, parquet = read_csv_layout(tmp_path), read_parquet_layout(tmp_path / "data" / "nova-v1.parquet")
    assert read_benchmark(tmp_path).layout == "parquet" and read_benchmark(tmp_path, "csv").layout == "csv"
    assert [s.filename for s in csv.slices] == [s.filename for s in parquet.slices]
    assert csv.cases.keys() == parquet.cases.keys()
    for a, b, original in zip(csv.slices, parquet.slices, [s for c in cases for s in c.slices], strict=True):
        assert a.case_id == b.case_id and a.caption == b.caption == original.caption
        np.testing.assert_allclose(np.reshape([box for _, box in a.gold], (-1, 4)), np.reshape([box for _, box in b.gold], (-1, 4)))
        np.testing.assert_allclose(np.asarray([box for _, box in a.gold]).reshape(-1, 4), original.gold)
        np.testing.assert_array_equal(decode_slice(a), decode_slice(b))
        np.testing.assert_array_equal(decode_slice(a), original.image)
        assert len(b.raters) == sum(len(r) for _, r in original.raters) and a.raters == []
    for case_id, case in csv.cases.items():
        assert case["final_diagnosis"] == parquet.cases[case_id]["final_diagnosis"]
