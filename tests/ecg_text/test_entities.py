"""The rule/lexicon entity extractor (stand-in for K-MERL's LLM step) on hand-written reports."""
import pytest

from stages.ecg_text.entities import ENTITIES, entity_vector, extract_entities, normalise_report


@pytest.mark.parametrize("report, expected", [
    ("Sinus rhythm. Normal ECG.", ["normal_ecg", "sinus_rhythm"]),
    ("SINUS TACHYCARDIA. NO ATRIAL FIBRILLATION.", ["sinus_tachycardia"]),
    ("afib with irregular ventricular response, left bundle branch block", ["atrial_fibrillation", "wide_qrs"]),
    ("ST elevation II, III, aVF. without T wave inversion in lateral leads", ["inferior_st_elevation"]),
    ("no inferior st elevation. anteroseptal ST segment elevation", ["anterior_st_elevation"]),
    ("inverted T waves I, aVL, V5, V6; compared with previous tracing", ["lateral_t_inversion"]),
    ("RITMO SINUSALE. ECG NORMALE", ["normal_ecg", "sinus_rhythm"]),
    ("abnormal ECG. absence of anterior st elevation. negative for afib", []),
])
def test_entities_of_hand_written_reports(report, expected):
    assert extract_entities(report) == expected


def test_normalisation_as_merl():
    assert normalise_report("  Normal   EKG\nSinus Rhythm ") == "normal ecg sinus rhythm"


def test_entity_vector_order():
    vector = entity_vector(["wide_qrs", "atrial_fibrillation"])
    assert sum(vector) == 2 and vector[ENTITIES.index("wide_qrs")] == 1
