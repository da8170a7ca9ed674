"""The rule-based reward's parser on the answer forms the issue names, hand-labelled."""
import pytest

from stages.med_reasoning.reward import extract_choice, reward


@pytest.mark.parametrize(("text", "expected"), [
    ("The final answer is: \\boxed{C}", "C"),         # AlphaMed's project-page format
    ("so we get \\boxed{\\text{D}}.", "D"),
    ("\\boxed{(B)}", "B"),
    ("Answer: C", "C"),
    ("answer: (e)", None),                              # lower-case letters are not option letters
    ("The answer is B.", "B"),
    ("The correct answer is option A", "A"),
    ("(C)", "C"),
    ("I pick (D) here", "D"),
    ("C.", "C"),
    ("C", "C"),
    ("  B) 35 mg", "B"),
    ("**A**", "A"),
    ("Answer: A. Wait, re-checking the units, the answer is D.", "D"),  # the last stated answer
    ("\\boxed{B} ... The final answer is: \\boxed{E}", "E"),
    ("Answer: B. Option (C) is tempting but wrong.", "B"),  # an explicit answer beats a mention
    ("Cardiomegaly is seen on the film.", None),           # never the C of a word
    ("Answer: Cardiomegaly", None),
    ("Vitamin C deficiency", None),
    ("A 45-year-old man presents with chest pain.", None),  # the article A is no answer
    ("A. 140 mg\nB. 35 mg\nC. 72 mg", None),                # listing the options states no answer
    ("", None),
    ("The answer is F", None),                              # not among the options
])
def test_extract_choice_reads_the_stated_answer(text, expected):
    assert extract_choice(text) == expected


def test_more_options_widen_the_letters():
    assert extract_choice("The answer is F", options="ABCDEFGH") == "F"
    assert extract_choice("(H)", options="ABCDEFGH") == "H"
    assert extract_choice("(H)", options="ABCD") is None


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="upper-case"):
        extract_choice("A", options="abc")


def test_reward_scores_plain_and_chat_completions():
    completions = ["Answer: C", [{"role": "assistant", "content": "\\boxed{A}"}], "Cardiomegaly", "(B)"]
    assert reward(completions, ["C", "B", "C", "B"]) == [1.0, 0.0, 0.0, 1.0]


def test_reward_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        reward(["A", "B"], ["A"])
