"""Parsing the two datasets' metadata: TotalSegmentator ``meta.csv`` and AMOS ``labeled_data_meta_0000_0599.csv``."""
from __future__ import annotations

import math
import re

_DICOM_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}
_SEXES = {"m": "M", "male": "M", "f": "F", "female": "F"}


def parse_age(value: object) -> float:
    """Age in years from a number or a DICOM age string (AMOS: ``'046Y'``; also ``'018M'``, ``'030D'``).

    Missing or unparseable values are a ValueError that shows the value.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("age missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        years = float(value)
    else:
        match = _DICOM_AGE.match(str(value))
        if match is None:
            try:
                years = float(str(value).strip())
            except ValueError:
                raise ValueError(f"age {value!r} is not a number or a DICOM age string like '046Y'") from None
        else:
            years = int(match.group(1)) * _UNIT_YEARS[match.group(2).upper()]
    if not math.isfinite(years) or years < 0:
        raise ValueError(f"age {value!r} is not a non-negative number of years")
    return years


def parse_sex(value: object) -> str:
    """``'M'`` or ``'F'`` from m/f/M/F/male/female; anything else is a ValueError that shows the value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("sex missing")
    sex = _SEXES.get(str(value).strip().lower())
    if sex is None:
        raise ValueError(f"sex {value!r} is not one of M, F (or m, f, male, female)")
    return sex


def amos_case_id(amos_id: object) -> str:
    """AMOS metadata's ``amos_id`` (e.g. ``1`` or ``'0001'``) -> the file stem ``amos_0001``."""
    text = str(amos_id).strip()
    if text.lower().startswith("amos_"):
        text = text[5:]
    if not text.isdigit():
        raise ValueError(f"amos_id {amos_id!r} is not a number")
    return f"amos_{int(text):04d}"
