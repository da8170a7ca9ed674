"""Location tokens and prompts against hand-computed cases and Florence-2's quantiser arithmetic."""
import numpy as np
import pytest

from stages.grounding.model import Vocabulary
from stages.grounding.prompts import prompt
from stages.grounding.tokens import decode, encode_target


def test_prompts_are_ag_kd_strings():
    assert prompt("nodule or mass") == "<CAPTION_TO_PHRASE_GROUNDING>Locate the phrases in the caption: nodule or mass."
    assert prompt("cardiomegaly", "an enlarged heart silhouette.") == (
        "<CAPTION_TO_PHRASE_GROUNDING>Locate the phrases in the caption: cardiomegaly means an enlarged heart silhouette..")


def test_encode_target_quantises_as_int_x_over_w_times_1000():
    # 100/512*1000 = 195.3 -> 195; 50/400*1000 = 125; 511.9/512*1000 = 999.8 -> 999; 512 clamps to 999
    text = encode_target("edema", [[100, 50, 511.9, 400], [0, 0, 512, 1]], 512, 400)
    assert text == "edema<loc_195><loc_125><loc_999><loc_999>edema<loc_0><loc_0><loc_999><loc_2>"


def test_decode_reads_bin_centres_and_round_trips_within_one_bin():
    rng = np.random.default_rng(0)
    x1, y1 = rng.uniform(0, 250, 20), rng.uniform(0, 150, 20)
    boxes = np.stack([x1, y1, x1 + rng.uniform(5, 250, 20), y1 + rng.uniform(5, 150, 20)], axis=1)
    decoded = decode(encode_target("lung cyst", boxes.tolist(), 512, 300), 512, 300)
    assert decoded.unparsed == 0 and [phrase for phrase, _ in decoded] == ["lung cyst"] * 20
    got = np.array([box for _, box in decoded])
    bin_size = np.array([512, 300, 512, 300]) / 1000
    assert (np.abs(got - boxes) < bin_size[None] + 1e-9).all()
    np.testing.assert_allclose(got, (np.floor(boxes / bin_size) + 0.5) * bin_size)


@pytest.mark.parametrize(("text", "boxes", "unparsed"), [
    ("edema<loc_1><loc_2><loc_3>", 0, 1),                                  # three tokens only
    ("edema<loc_1><loc_2><loc_3><loc_4>junk", 1, 1),                       # trailing text
    ("a<loc_1><loc_2>b<loc_1><loc_2><loc_3><loc_4>", 1, 1),                # broken box before a good one
    ("a<loc_5><loc_5><loc_1><loc_9>", 0, 1),                               # x2 < x1
    ("a<loc_1><loc_2><loc_3><loc_1000>", 0, 1),                            # bin out of range
    ("", 0, 0),
    ("<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>", 2, 0),    # no phrase: empty phrases
])
def test_malformed_answers_decode_what_parses_and_count_the_rest(text, boxes, unparsed):
    decoded = decode(text, 1000, 1000)
    assert len(decoded) == boxes and decoded.unparsed == unparsed


def test_vocabulary_round_trips_a_target():
    vocabulary = Vocabulary.from_texts([prompt("lung cyst", "a thin-walled round lucency")])
    target = encode_target("lung cyst", [[10, 20, 30, 40], [50, 60, 70, 80]], 100, 100)
    assert vocabulary.decode(vocabulary.encode(target)) == "lung cyst<loc_100><loc_200><loc_300><loc_400>lung cyst<loc_500><loc_600><loc_700><loc_800>"
    assert len(vocabulary) == 5 + 1000 + len(vocabulary.words)
