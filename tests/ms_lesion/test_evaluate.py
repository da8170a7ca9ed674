"""Evaluate's pure parts: which kinds are scored, per-case scores, the union comparison and the claims on hand-made tables."""
import numpy as np
import pandas as pd
import pytest

from stages.ms_lesion.evaluate import (
    EvaluateParams,
    constraint_ablation,
    kinds_scored,
    paper_claims,
    score_case,
    union_comparisons,
)

PARAMS = EvaluateParams(threshold=0.5, window=(8, 8, 8), min_voxels=1, bootstrap_samples=100, num_threads=1)


def test_cross_sectional_scans_are_scored_once_on_all_lesions():
    assert kinds_scored(False, np.ones(4, bool)) == ["all_t1"]
    assert kinds_scored(True, np.array([False, False, True, False])) == ["new"]
    assert kinds_scored(True, np.ones(4, bool)) == ["all_t1", "all_t2", "new", "vanishing"]


def test_score_case_by_hand():
    truth = np.zeros((4, 6, 6, 6), np.uint8)
    truth[:2, 1:3, 1:3, 1:3] = 1          # one persistent lesion at both time points, 8 voxels
    truth[2, 4:6, 4:6, 4:6] = 1           # a new lesion (t2 map lacks it: the prediction is scored, not the truth)
    predicted = truth.astype(bool).copy()
    predicted[3] = False
    arrays = {"truth": truth, "truth_known": np.ones(4, bool), "spacing": np.array([2.0, 2.0, 2.0])}
    rows = {row["kind"]: row for row in score_case(predicted, arrays, True, PARAMS)}
    assert rows["all_t1"]["dice"] == 1.0 and rows["all_t1"]["hd95"] == 0.0 and rows["new"]["lesion_f1"] == 1.0
    assert rows["all_t1"]["truth_ml"] == pytest.approx(8 * 8 / 1000)
    assert np.isnan(rows["vanishing"]["dice"])  # both empty: undefined under the "nan" policy
    # temporal: implied (a1 | new) - vanishing has 16 voxels, predicted a2 has 8, all inside -> 2*8/24
    assert rows["temporal"]["dice"] == pytest.approx(2 / 3)


def scores_table(union_dice: float, single_dice: float, constrained: float, unconstrained: float) -> pd.DataFrame:
    rows = []
    for case in ("a", "b", "c"):
        for task in ("all", "new", "vanishing", "temporal"):
            for model in ("crosssectional", "msseg2", "longitudinal"):
                rows.append({"model": model, "case_id": case, "task": task, "dice": single_dice, "lesion_f1": single_dice})
            rows.append({"model": "union", "case_id": case, "task": task, "dice": union_dice, "lesion_f1": constrained})
            rows.append({"model": "union_unconstrained", "case_id": case, "task": task, "dice": unconstrained,
                         "lesion_f1": unconstrained})
    return pd.DataFrame(rows)


def test_claims_follow_the_numbers():
    scores = scores_table(union_dice=0.6, single_dice=0.4, constrained=0.7, unconstrained=0.5)
    comparisons = union_comparisons(scores, 100, 0)
    assert len(comparisons) == 9 and comparisons.union_better.all()
    assert comparisons.covered.sum() == 5  # all; new; all, new, vanishing
    ablation = constraint_ablation(scores, 100, 0)
    claims = {c.id: c for c in paper_claims(comparisons, ablation, {"dice": 0.3, "lesion_f1": 0.2, "cases": 3, "interval": (0.1, 0.5)})}
    assert claims["union_beats_per_dataset_covered"].holds and claims["union_beats_per_dataset_lacking"].holds
    assert ablation.raised.all() and claims["constraints_raise_new_vanishing_and_consistency"].holds
    assert claims["vanishing_lesions_segmented"].holds
    worse = scores_table(union_dice=0.3, single_dice=0.4, constrained=0.3, unconstrained=0.5)
    worse_claims = {c.id: c for c in paper_claims(union_comparisons(worse, 100, 0), constraint_ablation(worse, 100, 0),
                                                  {"dice": 0.01, "lesion_f1": 0.0, "cases": 3, "interval": (0.001, 0.02)})}
    assert not any(claim.holds for claim in worse_claims.values())
