"""The deterministic diagnosis judge and Top-k counting."""
import numpy as np

from stages.nova.judges import SynonymJudge, top_k_hits


def test_synonyms_spelling_and_wording_match():
    judge = SynonymJudge()
    assert judge.match("GBM", "Glioblastoma")
    assert judge.match("glioblastoma multiforme (WHO grade 4)", "Glioblastoma")
    assert judge.match("Hemangioblastoma", "Haemangioblastoma")
    assert judge.match("Wernicke encephalopathy", "Wernicke's encephalopathy")
    assert judge.match("cavernous angioma", "Cavernous malformation")
    assert judge.match("Neurocysticercosis.", "neurocysticercosis")


def test_different_diseases_do_not_match():
    judge = SynonymJudge()
    assert not judge.match("Meningioma", "Glioblastoma")
    assert not judge.match("Primary CNS lymphoma", "Tumefactive demyelinating lesion")
    assert not judge.match("", "Meningioma")
    # outside the catalogue: word overlap decides
    assert judge.match("acute disseminated encephalomyelitis", "Acute disseminated encephalomyelitis (ADEM)")
    assert not judge.match("acute ischaemic stroke", "Acute disseminated encephalomyelitis")
    assert judge.match("spinal dural arteriovenous fistula", "Spinal dural arteriovenous fistula")


def test_top_k_by_hand():
    judge = SynonymJudge()
    predictions = [["GBM", "Meningioma"], ["Meningioma", "Abscess", "brain abscess"], ["Lymphoma"] * 5 + ["Cavernoma"], []]
    golds = ["Glioblastoma", "Cerebral abscess", "Cavernoma", "Meningioma"]
    top1, top5 = top_k_hits(judge, predictions, golds)
    np.testing.assert_array_equal(top1, [True, False, False, False])
    np.testing.assert_array_equal(top5, [True, True, False, False])  # the 6th name is beyond the top 5
