"""Metadata parsing of both datasets: DICOM ages like AMOS's '046Y', sexes, AMOS case ids."""
import math

import pytest

from stages.ct_fairness.metadata import amos_case_id, parse_age, parse_sex


@pytest.mark.parametrize("raw, years", [("046Y", 46.0), ("46Y", 46.0), (" 070y ", 70.0), ("018M", 1.5), ("007W", 7 * 7 / 365.25),
                                        ("030D", 30 / 365.25), (63, 63.0), ("63", 63.0), (41.5, 41.5)])
def test_age_parsing(raw, years):
    assert parse_age(raw) == pytest.approx(years)


@pytest.mark.parametrize("raw", [None, float("nan"), "", "Y046", "forty", "-3", "046X"])
def test_bad_ages_are_errors_that_show_the_value(raw):
    with pytest.raises(ValueError, match="age"):
        parse_age(raw)


def test_sex_parsing():
    assert [parse_sex(v) for v in ("M", "f", " F ", "male", "Female")] == ["M", "F", "F", "M", "F"]
    for bad in (None, math.nan, "", "O", "x"):
        with pytest.raises(ValueError, match="sex"):
            parse_sex(bad)


def test_amos_case_ids():
    assert [amos_case_id(v) for v in (1, "0001", "amos_0042", 507)] == ["amos_0001", "amos_0001", "amos_0042", "amos_0507"]
    with pytest.raises(ValueError, match="amos_id"):
        amos_case_id("abc")
