"""Readers against fixtures written from the public descriptions, and the synthetic generator's arithmetic."""
import json

import numpy as np
import pytest

from stages.common.badinput import BadInputError
from stages.med_reasoning import synthetic
from stages.med_reasoning.formats import format_prompt, iter_records, parse_record, split_stem_and_options
from stages.med_reasoning.reward import extract_choice

# A line shaped like jind11/MedQA questions/US/test.jsonl (README: question, answer, options A-E,
# meta_info, answer_idx); the text is ours.
MEDQA_LINE = {
    "question": "A 23-year-old woman presents with fatigue and pallor. Which test is most appropriate next?",
    "answer": "Serum ferritin",
    "options": {"A": "Chest radiograph", "B": "Serum ferritin", "C": "Lumbar puncture", "D": "Echocardiography",
                "E": "Bone scan"},
    "meta_info": "step1",
    "answer_idx": "B",
}


def test_medqa_record_is_read_with_a_line_based_id():
    q = parse_record(MEDQA_LINE, "test-1", "test", "test.jsonl line 1")
    assert (q.id, q.answer, q.letters, q.source_dataset) == ("test-1", "B", "ABCDE", "test")
    assert q.options["B"] == MEDQA_LINE["answer"]


def test_four_option_hub_copy_is_read_too():
    record = {**MEDQA_LINE, "options": {k: v for k, v in MEDQA_LINE["options"].items() if k != "E"}}
    assert parse_record(record, "x", "medqa", "f").letters == "ABCD"


def test_alphamed_row_with_options_in_the_question():
    row = {"question": "Which vitamin deficiency causes scurvy?\nA. Vitamin A\nB. Vitamin B12\nC. Vitamin C\nD. Vitamin D",
           "answer": "C. Vitamin C", "source": "medmcqa"}
    q = parse_record(row, "r1", "alphamed", "train.parquet row 1")
    assert q.question == "Which vitamin deficiency causes scurvy?"
    assert q.options == {"A": "Vitamin A", "B": "Vitamin B12", "C": "Vitamin C", "D": "Vitamin D"}
    assert (q.answer, q.source_dataset) == ("C", "medmcqa")


@pytest.mark.parametrize(("record", "message"), [
    ({**MEDQA_LINE, "answer_idx": "F"}, "answer 'F' is not among the options"),
    ({**MEDQA_LINE, "question": "  "}, "empty question"),
    ({**MEDQA_LINE, "answer": "Bone scan"}, "is not option B"),
    ({**MEDQA_LINE, "options": {"A": "only one"}, "answer_idx": "A", "answer": "only one"}, "1 options"),
    ({**MEDQA_LINE, "options": {"A": "x", "C": "y"}, "answer_idx": "A", "answer": "x"}, "must run A, B, C"),
    ({"question": "no options here", "answer": "A"}, "no option lines"),
    ({"question": "Q\nA. x\nB. y", "answer": "maybe"}, "does not start with an option letter"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_records_name_the_place_and_the_problem(record, message):
    with pytest.raises(BadInputError, match="f line 7") as error:
        parse_record(record, "id", "src", "f line 7")
    assert message in str(error.value)


def test_jsonl_reader_reports_a_line_that_is_not_json(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(MEDQA_LINE) + "\n\n{not json\n")
    records = list(iter_records(path))
    assert [number for number, _, _ in records] == [1, 3]
    assert isinstance(records[1][1], BadInputError) and "train.jsonl line 3: not JSON" in str(records[1][1])


def test_parquet_rows_are_read(tmp_path):
    import pandas as pd

    pd.DataFrame([{"question": "Q?\nA. x\nB. y", "answer": "B"}]).to_parquet(tmp_path / "train.parquet")
    (_, record, where), = iter_records(tmp_path / "train.parquet")
    assert where == "train.parquet row 1" and parse_record(record, "i", "s", where).answer == "B"


def test_split_stem_keeps_a_multi_line_stem():
    stem, options = split_stem_and_options("Line one.\nLine two?\n(A) yes\n(B) no", "w")
    assert stem == "Line one.\nLine two?" and options == {"A": "yes", "B": "no"}


def test_bmi_matches_the_formula():
    calc = synthetic.bmi(np.random.default_rng(3))
    weight, height = (float(s.split()[1]) for s in calc.facts)
    assert calc.answer == pytest.approx(weight / height**2)
    assert 70 / 1.75**2 == pytest.approx(22.857, abs=1e-3)


def test_cockcroft_gault_hand_case():
    # 60-year-old woman, 72 kg, creatinine 1.0 mg/dL: (140-60)*72/(72*1.0)*0.85 = 68
    rng = np.random.default_rng(0)
    for _ in range(200):
        calc = synthetic.creatinine_clearance(rng)
        age = int(calc.facts[0].split()[1].split("-")[0])
        weight, creatinine = float(calc.facts[1].split()[1]), float(calc.facts[2].split()[2])
        factor = 0.85 if "woman" in calc.facts[0] else 1.0
        assert calc.answer == pytest.approx((140 - age) * weight / (72 * creatinine) * factor)
    assert (140 - 60) * 72 / (72 * 1.0) * 0.85 == pytest.approx(68.0)


def test_anion_gap_and_mean_arterial_pressure_formulas():
    rng = np.random.default_rng(1)
    gap = synthetic.anion_gap(rng)
    na, cl, hco3 = (float(f.split()[1]) for f in gap.facts)
    assert gap.answer == na - cl - hco3
    pressure = synthetic.mean_arterial_pressure(rng)
    systolic, diastolic = (float(v) for v in pressure.facts[0].split()[2].split("/"))
    assert pressure.answer == pytest.approx((systolic + 2 * diastolic) / 3)


def test_generated_questions_are_valid_and_the_answer_option_holds_the_value():
    rng = np.random.default_rng(0)
    questions = synthetic.generate_split("t", synthetic.IN_DOMAIN, 14, ["short", "long"], 5, (3, 6), rng)
    assert len({q.id for q in questions}) == 28
    letters = [q.answer for q in questions]
    assert len(set(letters)) >= 4  # answer positions are shuffled
    for q in questions:
        assert len(set(q.options.values())) == 5
        again = parse_record({"question": q.question, "options": q.options, "answer_idx": q.answer}, q.id, "s", "w")
        assert again.answer == q.answer
    long_words = np.mean([len(q.question.split()) for q in questions if q.extra["subset"] == "long"])
    short_words = np.mean([len(q.question.split()) for q in questions if q.extra["subset"] == "short"])
    assert long_words > 2 * short_words
    assert {q.extra["steps"] for q in questions} == {1, 2, 3, 4}


def test_prompt_styles_end_with_their_instruction():
    q = parse_record(MEDQA_LINE, "i", "s", "w")
    letter = format_prompt(q, "letter")
    assert letter.splitlines()[1] == "A. Chest radiograph" and letter.endswith("correct option only.")
    assert extract_choice(format_prompt(q, "boxed").splitlines()[-1]) is None  # the instruction's placeholder is no answer
    with pytest.raises(ValueError, match="prompt style"):
        format_prompt(q, "json")
