"""Answer parsing, AG-KD's difflib class matching and the mAP protocol against hand-computed cases."""
import json
from difflib import get_close_matches

import numpy as np
import pandas as pd

from stages.grounding.scoring import match_class, parse_answers, score

CLASSES = ["cardiomegaly", "edema", "lung cyst", "nodule or mass"]


def test_phrases_match_the_closest_class_name_as_difflib_does():
    for phrase in ("cardiomegally", "lung cysts", "nodule", "edma", "zzz", "mass"):
        expected = get_close_matches(phrase, CLASSES, n=1, cutoff=0.5)
        assert match_class(phrase, CLASSES, 0.5) == (expected[0] if expected else None)
    assert match_class("zzz", CLASSES, 0.5) is None


def answers(*texts):
    return pd.DataFrame({"sample": [f"s{i}" for i in range(len(texts))], "class_name": ["edema"] * len(texts),
                         "answer": list(texts), "width": 1000, "height": 1000})


def test_unparsable_and_unmatched_answers_are_counted_not_raised():
    parsed = parse_answers(answers("edema<loc_1><loc_2><loc_3><loc_4>", "garbage<loc_1>", "zzz<loc_1><loc_2><loc_3><loc_4>", ""),
                           CLASSES, 0.5, assign_queried_class=False)
    assert list(parsed.boxes.category) == ["edema"]
    np.testing.assert_allclose(parsed.boxes[["x", "y", "w", "h"]].to_numpy(), [[1.5, 2.5, 2.0, 2.0]])
    assert list(parsed.per_sample.unparsed) == [0, 1, 0, 0]
    assert list(parsed.per_sample.unmatched) == [0, 0, 1, 0]
    assert list(parsed.per_sample.no_box) == [False, True, False, True]
    queried = parse_answers(answers("zzz<loc_1><loc_2><loc_3><loc_4>"), CLASSES, 0.5, assign_queried_class=True)
    assert list(queried.boxes.category) == ["edema"]


def test_map_over_queries_by_hand():
    # Two edema queries, one gold box each. Query 0: an exact box (TP). Query 1: a box of IoU 0.6 (TP at
    # 0.5 and 0.55, FP from 0.6 up: 0.6 is not >= 0.6 + numeric slack? IoU here is exactly 0.6, so TP at 0.6).
    queries = pd.DataFrame({"sample": ["a", "b"], "class_name": ["edema", "edema"],
                            "boxes": [json.dumps([[0, 0, 10, 10]]), json.dumps([[0, 0, 10, 10]])]})
    boxes = pd.DataFrame([{"sample": "a", "category": "edema", "x": 0, "y": 0, "w": 10, "h": 10},
                          {"sample": "b", "category": "edema", "x": 0, "y": 0, "w": 10, "h": 6},
                          {"sample": "b", "category": "cardiomegaly", "x": 0, "y": 0, "w": 1, "h": 1}])
    scores = score(queries, boxes, resamples=0, seed=0)
    assert scores.off_scope == 1
    # With both detections TP at IoU t <= 0.6: recall 1, precision 1 -> AP 1. Above 0.6 only one of two: AP = 0.5
    # (precision 1 up to recall 0.5: 51 of 101 recall points) -> 51/101.
    expected = np.array([1.0 if t <= 0.6 + 1e-9 else 51 / 101 for t in np.linspace(0.5, 0.95, 10)])
    assert scores.summary()["map50"] == 1.0
    np.testing.assert_allclose(scores.summary()["map75"], 51 / 101)
    np.testing.assert_allclose(scores.summary()["map50_95"], expected.mean())
