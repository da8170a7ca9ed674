"""Captioning metrics against sacrebleu, nltk, rouge-score, scikit-learn and hand cases."""
import numpy as np
import pytest
import sacrebleu
from nltk.translate.meteor_score import single_meteor_score

from stages.nova.text_metrics import (
    LexiconKeywordExtractor,
    LexiconSynonyms,
    binary_f1,
    bleu_statistics,
    corpus_bleu_from_statistics,
    macro_f1,
    meteor,
    rouge_l,
    score_captions,
    set_f1,
    tokenise,
)

GOLD = [
    "Axial FLAIR image shows a large hyperintense ring-enhancing lesion in the right parietal white matter with oedema.",
    "Coronal T1-weighted image shows no focal abnormality.",
    "Sagittal T2-weighted image shows multiple small hyperintense foci in the left frontal cortex.",
    "Axial DWI image shows a small isointense lobulated lesion in the left lateral ventricle.",
]
PREDICTED = [
    "Axial FLAIR image shows a small hyperintense lesion in the right frontal white matter.",
    "Coronal T1-weighted image shows no focal abnormality.",
    "completely unrelated words",
    "Axial T2 weighted slice with a bright mass in the left ventricle.",
]


class NoSynonyms:
    def synsets(self, word):
        return []


def test_corpus_bleu_equals_sacrebleu_and_subsets_too():
    stats = bleu_statistics(PREDICTED, GOLD)
    assert corpus_bleu_from_statistics(stats) == pytest.approx(sacrebleu.corpus_bleu(PREDICTED, [GOLD]).score, abs=1e-9)
    subset = np.array([0, 0, 3])
    expected = sacrebleu.corpus_bleu([PREDICTED[i] for i in subset], [[GOLD[i] for i in subset]]).score
    assert corpus_bleu_from_statistics(stats, subset) == pytest.approx(expected, abs=1e-9)


def test_meteor_is_nltks_and_uses_the_lexicon_synonyms():
    plain = meteor(PREDICTED[0], GOLD[0], synonyms=NoSynonyms())
    assert plain == pytest.approx(single_meteor_score(tokenise(GOLD[0]), tokenise(PREDICTED[0]), wordnet=NoSynonyms()))
    assert meteor(GOLD[1], GOLD[1]) > 0.99
    assert meteor(PREDICTED[2], GOLD[2]) == 0.0
    # "bright" and "hyperintense" are one synonym group of the lexicon: matched only with it.
    assert meteor("bright lesion", "hyperintense lesion") > meteor("bright lesion", "hyperintense lesion", synonyms=NoSynonyms())
    assert {lemma.name() for s in LexiconSynonyms().synsets("bright") for lemma in s.lemmas()} >= {"bright", "hyperintense"}


def lcs(a, b):
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1, j + 1] = table[i, j] + 1 if x == y else max(table[i, j + 1], table[i + 1, j])
    return table[-1, -1]


def test_rouge_l_by_hand_lcs():
    hypothesis, reference = "the small lesion in the cortex", "a large lesion in the left cortex"
    common = lcs(hypothesis.split(), reference.split())  # lesion in the cortex = 4
    precision, recall = common / 6, common / 7
    assert rouge_l(hypothesis, reference) == pytest.approx(2 * precision * recall / (precision + recall))


def test_keywords_modality_and_clinical():
    keywords = LexiconKeywordExtractor().extract(GOLD[0])
    assert keywords.modality == {"axial", "flair"}
    assert keywords.clinical == {"large", "hyperintense", "ring enhancing", "lesion", "right", "parietal", "white matter", "oedema"}
    other = LexiconKeywordExtractor().extract("T2w coronal: bright mass, deep gray matter, edema")
    assert other.modality == {"t2w", "coronal"}
    assert other.clinical == {"hyperintense", "mass", "deep grey matter", "oedema"}


def test_normal_detection():
    extractor = LexiconKeywordExtractor()
    assert extractor.is_normal("Coronal T1-weighted image shows no focal abnormality.")
    assert extractor.is_normal("Unremarkable study.")
    assert not extractor.is_normal("No focal abnormality apart from a small hyperintense lesion.")
    assert not extractor.is_normal(GOLD[0])


NORMAL_CAPTIONS = ["Normal MRI of the brain.", "The brain parenchyma appears normal.", "No evidence of intracranial pathology.",
                   "Axial FLAIR image without focal abnormality.", "No abnormal signal intensity.", "Unremarkable study."]
ABNORMAL_CAPTIONS = ["Axial FLAIR shows a hyperintense lesion in the left frontal lobe.",
                     "The brain parenchyma appears normal apart from a small cyst.",
                     "Coronal T1 image: a lobulated mass with ring enhancement.",
                     "No evidence of haemorrhage; a large infiltrative mass with oedema."]


def test_normal_phrasings_are_read_as_normal_and_gold_captions_score_one():
    extractor = LexiconKeywordExtractor()
    assert [extractor.is_normal(c) for c in NORMAL_CAPTIONS] == [True] * len(NORMAL_CAPTIONS)
    assert [extractor.is_normal(c) for c in ABNORMAL_CAPTIONS] == [False] * len(ABNORMAL_CAPTIONS)
    gold = NORMAL_CAPTIONS + ABNORMAL_CAPTIONS
    fed_back = score_captions(gold, gold)  # the gold label comes from the gold caption itself
    assert fed_back.gold_abnormal.tolist() == [False] * len(NORMAL_CAPTIONS) + [True] * len(ABNORMAL_CAPTIONS)
    assert fed_back.summary()["normal_abnormal_f1"] == pytest.approx(1.0)


def test_normal_abnormal_is_macro_f1_as_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(4)
    gold, predicted = rng.random(60) < 0.8, rng.random(60) < 0.5
    assert macro_f1(gold, predicted) == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert macro_f1([True, True], [True, True]) == pytest.approx(f1_score([True, True], [True, True], average="macro"))
    captions = ["Normal MRI of the brain.", "A hyperintense lesion."]
    scores = score_captions(["A hyperintense lesion.", "A hyperintense lesion."], captions)
    assert scores.summary()["normal_abnormal_f1"] == pytest.approx(f1_score([0, 1], [1, 1], average="macro"))


def test_an_empty_caption_scores_zero_even_against_a_caption_without_modality_words():
    gold = ["A hyperintense lesion in the frontal lobe.", "Axial T2 image with a cyst."]
    scores = score_captions(["", "   "], gold)
    assert scores.modality_f1.tolist() == [0.0, 0.0] and scores.clinical_f1.tolist() == [0.0, 0.0]
    both_silent = score_captions(["A lesion in the frontal lobe."], gold[:1])  # a real caption agreeing on "no modality"
    assert both_silent.modality_f1.tolist() == [1.0]


def test_f1s_by_hand_and_against_scikit_learn():
    assert set_f1({"a", "b"}, {"b", "c", "d"}) == pytest.approx(2 * 1 / 5)
    assert set_f1(set(), set()) == 1.0 and set_f1({"a"}, set()) == 0.0
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold, predicted = rng.random(50) < 0.7, rng.random(50) < 0.6
    assert binary_f1(gold, predicted) == pytest.approx(f1_score(gold, predicted))
    assert np.isnan(binary_f1([False], [False]))


def test_score_captions_summary():
    scores = score_captions(PREDICTED, GOLD, [True, False, True, True])
    summary = scores.summary()
    assert summary["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTED, [GOLD]).score)
    assert summary["modality_f1"] == pytest.approx(np.mean([1.0, 1.0, 0.0, 2 * 1 / 5]))
    # predicted abnormal: 0 yes, 1 no (normal), 2 no abnormal term but no normal phrase -> abnormal, 3 yes
    assert scores.predicted_abnormal.tolist() == [True, False, True, True]
    assert summary["normal_abnormal_f1"] == pytest.approx(1.0)  # macro F1 over both classes
