"""ct_fairness's claims: hand-made summaries on either side of each threshold."""
from stages.ct_fairness.evaluate import SAME_ORDER_FACTOR, paper_claims


def verdicts(summary):
    return {c.id: c.holds for c in paper_claims(summary)}


def test_population_gaps_within_the_factor_of_the_dataset_gap_hold():
    summary = {"mean_abs_gap_percent": {"sex": 8.0, "age": 5.0, "dataset": 12.0}, "truth_direction_agrees": 12, "truth_rows": 12}
    assert verdicts(summary) == {"population_gap_rivals_dataset_gap": True, "gap_directions_match_synthetic_truth": True}
    far = {"mean_abs_gap_percent": {"sex": 12.0 / SAME_ORDER_FACTOR - 0.1, "age": 5.0, "dataset": 12.0},
           "truth_direction_agrees": 11, "truth_rows": 12}
    assert verdicts(far) == {"population_gap_rivals_dataset_gap": False, "gap_directions_match_synthetic_truth": False}


def test_real_data_has_no_synthetic_truth_claim():
    assert set(verdicts({"mean_abs_gap_percent": {"sex": 1.0, "dataset": 1.0}})) == {"population_gap_rivals_dataset_gap"}


def test_organs_must_be_resolved_and_learned_above_the_reliability_floor():
    """Issue 18 items 3 and 10: a warning, or any organ's same-group Dice below min_reliable_dice, fails the claim."""
    base = {"mean_abs_gap_percent": {"sex": 1.0, "dataset": 1.0}, "median_preprocessed_voxels": {"liver": 900.0},
            "low_dice_gaps": 0, "gap_cells": 8, "min_reliable_dice": 0.5}
    good = {**base, "organ_warnings": {}, "mean_dice": {"liver": 0.9, "pancreas": 0.55}}
    assert verdicts(good)["every_organ_resolved_and_learned"] is True
    assert verdicts({**good, "mean_dice": {"liver": 0.9, "pancreas": 0.49}})["every_organ_resolved_and_learned"] is False
    warned = {**good, "organ_warnings": {"pancreas": "median 3 voxels on the preprocessed grid, below the floor of 20"}}
    assert verdicts(warned)["every_organ_resolved_and_learned"] is False
