"""Captioning metrics of the NOVA benchmark.

- BLEU-4: sacrebleu's corpus BLEU with its defaults (13a tokeniser, exponential smoothing). Per-caption
  n-gram statistics are kept so a bootstrap resample recomputes the corpus score exactly.
- METEOR: nltk's implementation (exact and Porter-stem matching, fragmentation penalty). nltk's
  synonym stage needs the WordNet corpus, which is a run-time download; it is replaced by the
  study's own clinical synonym lexicon (:data:`SYNONYM_GROUPS`), so general-English synonyms are
  not matched. Scores are therefore not identical to WordNet METEOR; they are labelled so.
- ROUGE-L: rouge-score's F-measure with its Porter stemmer.
- Clinical-term and modality-term F1 per caption, from keywords. Modality terms are the
  paper's set; clinical terms are every other keyword. The paper extracts keywords with an
  LLM; :class:`LexiconKeywordExtractor` is the deterministic offline default (a judge with the
  same ``extract``/``is_normal`` methods can replace it).
  An empty caption scores 0 on both (ours; two empty keyword sets would otherwise "agree").
- Normal/abnormal: macro F1 over the two classes, the gold label read from the gold caption by
  the same extractor (as the public re-implementation does), not from the presence of a box.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MODALITY_TERMS = frozenset({"flair", "t1", "t2", "t1w", "t2w", "dwi", "axial", "sagittal", "coronal", "weighted"})

# canonical term -> spellings and synonyms recognised in a caption (longest match first).
CLINICAL_LEXICON: dict[str, tuple[str, ...]] = {
    "hyperintense": ("hyperintense", "hyperintensity", "hyperintensities", "high signal", "bright"),
    "hypointense": ("hypointense", "hypointensity", "hypointensities", "low signal", "dark"),
    "isointense": ("isointense", "isointensity", "intermediate signal"),
    "lesion": ("lesion", "lesions", "abnormality", "abnormalities"),
    "mass": ("mass", "masses", "tumour", "tumor"),
    "focus": ("focus", "foci"),
    "cyst": ("cyst", "cysts", "cystic"),
    "ring enhancing": ("ring-enhancing", "ring enhancing", "ring enhancement", "rim enhancement", "rim-enhancing"),
    "enhancement": ("enhancing", "enhancement", "enhances"),
    "necrosis": ("necrosis", "necrotic"),
    "oedema": ("oedema", "edema", "vasogenic"),
    "haemorrhage": ("haemorrhage", "hemorrhage", "haemorrhagic", "hemorrhagic", "haemosiderin", "hemosiderin", "microbleeds"),
    "calcification": ("calcification", "calcified"),
    "multifocal": ("multifocal", "multiple"),
    "infiltrative": ("infiltrative", "ill-defined", "ill defined", "poorly defined"),
    "well circumscribed": ("well-circumscribed", "well circumscribed", "well-defined", "well defined"),
    "lobulated": ("lobulated",),
    "round": ("round", "rounded", "ovoid"),
    "elongated": ("elongated", "linear"),
    "mass effect": ("mass effect", "midline shift", "compressing"),
    "restricted diffusion": ("restricted diffusion", "diffusion restriction"),
    "hydrocephalus": ("hydrocephalus",),
    "swelling": ("swelling", "swollen"),
    "white matter": ("white matter",),
    "grey matter": ("grey matter", "gray matter"),
    "deep grey matter": ("deep grey matter", "deep gray matter", "basal ganglia", "thalamus", "thalamic"),
    "periventricular": ("periventricular",),
    "cortex": ("cortex", "cortical", "subcortical"),
    "ventricle": ("ventricle", "ventricles", "ventricular", "intraventricular"),
    "extra-axial": ("extra-axial", "extra axial", "dural", "dural-based", "meningeal", "leptomeningeal"),
    "corpus callosum": ("corpus callosum", "callosal"),
    "convexity": ("convexity",),
    "frontal": ("frontal",),
    "parietal": ("parietal",),
    "temporal": ("temporal",),
    "occipital": ("occipital",),
    "cerebellum": ("cerebellum", "cerebellar"),
    "brainstem": ("brainstem", "pons", "pontine", "midbrain", "medulla"),
    "left": ("left",),
    "right": ("right",),
    "bilateral": ("bilateral", "symmetric", "symmetrical"),
    "small": ("small", "tiny"),
    "large": ("large", "big", "extensive"),
}
# Synonyms that nltk's METEOR may match (its WordNet stage), from the lexicon's one-word spellings.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(s for s in spellings if " " not in s and "-" not in s) | ({term} if " " not in term else set())
    for term, spellings in CLINICAL_LEXICON.items()
)
_QUALIFIER = r"(?:(?:any|a|an|focal|definite|acute|significant|intracranial|parenchymal|structural|other|obvious|visible) )*"
_FINDING = r"(?:abnormalit|lesion|pathology|mass|disease|finding)"
NORMAL_PATTERNS = (
    rf"\bno (?:(?:evidence|sign|signs) of )?{_QUALIFIER}{_FINDING}",
    rf"\bwithout (?:(?:evidence|sign|signs) of )?{_QUALIFIER}{_FINDING}",
    r"\bno abnormal (?:signal|finding|enhancement|intensity)",
    r"\bunremarkable\b",
    r"\bnormal (?:mri|mr|study|appearance|appearing|brain|slice|scan|image|examination|findings)\b",
    r"\b(?:appears?|appearing|looks?|is|are|remains?|seems?) (?:entirely |otherwise |grossly |essentially |within )?normal\b",
    r"\bwithin normal limits\b", r"^\s*normal\.?\s*$",
)
ABNORMAL_TERMS = frozenset({"lesion", "mass", "focus", "cyst", "ring enhancing", "hyperintense", "hypointense",
                            "oedema", "haemorrhage", "necrosis", "multifocal", "infiltrative", "mass effect"})

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenise(text: str) -> list[str]:
    """Lower-case alphanumeric tokens (``T1-weighted`` -> ``t1``, ``weighted``)."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=1)
def _lexicon_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    spelling_to_term = {spelling: term for term, spellings in CLINICAL_LEXICON.items() for spelling in spellings}
    ordered = sorted(spelling_to_term, key=lambda s: (-len(s), s))
    pattern = re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(s) for s in ordered) + r")(?![a-z0-9])")
    return pattern, spelling_to_term


@dataclass(frozen=True)
class Keywords:
    clinical: frozenset[str]
    modality: frozenset[str]


class LexiconKeywordExtractor:
    """Deterministic keyword extractor (offline default judge): clinical terms by longest match
    against :data:`CLINICAL_LEXICON`, modality terms by token against :data:`MODALITY_TERMS`."""

    name = "lexicon (deterministic, offline default)"

    def extract(self, text: str) -> Keywords:
        lowered = text.lower()
        pattern, spelling_to_term = _lexicon_pattern()
        clinical = {spelling_to_term[m.group(1)] for m in pattern.finditer(lowered)}
        modality = {t for t in tokenise(lowered) if t in MODALITY_TERMS}
        return Keywords(frozenset(clinical), frozenset(modality))

    def is_normal(self, text: str) -> bool:
        """A caption says normal: a normal phrase and no abnormal finding term."""
        lowered = text.lower()
        if not any(re.search(p, lowered) for p in NORMAL_PATTERNS):
            return False
        cleaned = lowered
        for p in NORMAL_PATTERNS:
            cleaned = re.sub(p + r"[a-z]*", " ", cleaned)
        return not (self.extract(cleaned).clinical & ABNORMAL_TERMS)


def set_f1(predicted: frozenset[str] | set[str], gold: frozenset[str] | set[str]) -> float:
    """F1 of two keyword sets; two empty sets agree perfectly (1.0). An empty caption is scored 0
    before this is reached (:func:`score_captions`), so agreeing by silence earns nothing."""
    if not predicted and not gold:
        return 1.0
    return 2.0 * len(set(predicted) & set(gold)) / (len(predicted) + len(gold))


def macro_f1(gold_positive: Sequence[bool], predicted_positive: Sequence[bool]) -> float:
    """Macro F1 over the two classes (normal, abnormal) present in gold or prediction, as scikit-learn's
    ``f1_score(average="macro")``; nan for no slice."""
    gold, predicted = np.asarray(gold_positive, bool), np.asarray(predicted_positive, bool)
    if len(gold) == 0:
        return float("nan")
    scores = [binary_f1(gold == c, predicted == c) for c in (False, True) if (gold == c).any() or (predicted == c).any()]
    return float(np.mean(scores))


def binary_f1(gold_positive: Sequence[bool], predicted_positive: Sequence[bool]) -> float:
    """F1 of the positive class; nan when there is no positive in either."""
    gold, predicted = np.asarray(gold_positive, bool), np.asarray(predicted_positive, bool)
    tp = int((gold & predicted).sum())
    denominator = 2 * tp + int((~gold & predicted).sum()) + int((gold & ~predicted).sum())
    return 2.0 * tp / denominator if denominator else float("nan")


# --------------------------------------------------------------------------- BLEU
@dataclass(frozen=True)
class BleuStatistics:
    """Per-caption BLEU sufficient statistics: (n, 4) matches, (n, 4) totals, (n,) hypothesis and reference lengths."""

    correct: np.ndarray
    total: np.ndarray
    sys_len: np.ndarray
    ref_len: np.ndarray


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> BleuStatistics:
    """sacrebleu's n-gram statistics caption by caption (their sums are the corpus statistics)."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)  # only silences the sentence-level warning; counts are unaffected
    rows = [bleu.sentence_score(h, [r]) for h, r in zip(hypotheses, references, strict=True)]
    return BleuStatistics(np.array([s.counts for s in rows], dtype=np.int64).reshape(-1, 4),
                          np.array([s.totals for s in rows], dtype=np.int64).reshape(-1, 4),
                          np.array([s.sys_len for s in rows], dtype=np.int64),
                          np.array([s.ref_len for s in rows], dtype=np.int64))


def corpus_bleu_from_statistics(stats: BleuStatistics, indices: np.ndarray | None = None) -> float:
    """Corpus BLEU-4 (0-100) of the chosen captions, as ``sacrebleu.corpus_bleu`` computes it."""
    from sacrebleu.metrics import BLEU

    chosen = slice(None) if indices is None else np.asarray(indices)
    if len(stats.sys_len[chosen]) == 0:
        return float("nan")
    score = BLEU.compute_bleu(stats.correct[chosen].sum(axis=0).tolist(), stats.total[chosen].sum(axis=0).tolist(),
                              int(stats.sys_len[chosen].sum()), int(stats.ref_len[chosen].sum()), smooth_method="exp")
    return float(score.score)


# --------------------------------------------------------------------------- METEOR, ROUGE-L
class _Lemma:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


class _Synset:
    def __init__(self, words: frozenset[str]) -> None:
        self._lemmas = [_Lemma(w) for w in sorted(words)]

    def lemmas(self) -> list[_Lemma]:
        return self._lemmas

    def lemma_names(self) -> list[str]:
        return [lemma.name() for lemma in self._lemmas]


class LexiconSynonyms:
    """The part of nltk's WordNet reader that METEOR uses (``synsets(word)``), answered from
    :data:`SYNONYM_GROUPS` instead of WordNet."""

    def __init__(self, groups: Sequence[frozenset[str]] = SYNONYM_GROUPS) -> None:
        from nltk.stem.porter import PorterStemmer

        # nltk stems the words its exact and stem stages left unmatched before asking for
        # synonyms, so each group answers for, and lists, its words' Porter stems as well.
        stem = PorterStemmer().stem
        self._by_word: dict[str, list[_Synset]] = {}
        for group in groups:
            synset = _Synset(frozenset(group) | {stem(word) for word in group})
            for word in synset.lemma_names():
                self._by_word.setdefault(word, []).append(synset)

    def synsets(self, word: str) -> list[_Synset]:
        return self._by_word.get(word, [])


def meteor(hypothesis: str, reference: str, synonyms: LexiconSynonyms | None = None) -> float:
    """Sentence METEOR (nltk; exact + Porter stem + lexicon-synonym matching)."""
    from nltk.translate.meteor_score import single_meteor_score

    hypothesis_tokens, reference_tokens = tokenise(hypothesis), tokenise(reference)
    if not hypothesis_tokens or not reference_tokens:
        return 0.0
    return float(single_meteor_score(reference_tokens, hypothesis_tokens, wordnet=synonyms or _default_synonyms()))


@lru_cache(maxsize=1)
def _default_synonyms() -> LexiconSynonyms:
    return LexiconSynonyms()


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, Porter stemming)."""
    return float(_rouge_scorer().score(reference, hypothesis)["rougeL"].fmeasure)


@dataclass
class CaptionScores:
    """Per-caption scores of one model, aligned with the gold captions."""

    bleu: BleuStatistics
    meteor: np.ndarray
    rouge_l: np.ndarray
    clinical_f1: np.ndarray
    modality_f1: np.ndarray
    gold_abnormal: np.ndarray
    predicted_abnormal: np.ndarray

    def summary(self, indices: np.ndarray | None = None) -> dict[str, float]:
        """Corpus BLEU-4 and the means of the others (all on 0-100 except F1s on 0-1), over ``indices``."""
        chosen = np.arange(len(self.meteor)) if indices is None else np.asarray(indices)
        if len(chosen) == 0:
            return {k: float("nan") for k in ("bleu4", "meteor", "rouge_l", "clinical_f1", "modality_f1", "normal_abnormal_f1")}
        return {
            "bleu4": corpus_bleu_from_statistics(self.bleu, chosen),
            "meteor": float(self.meteor[chosen].mean() * 100),
            "rouge_l": float(self.rouge_l[chosen].mean() * 100),
            "clinical_f1": float(self.clinical_f1[chosen].mean()),
            "modality_f1": float(self.modality_f1[chosen].mean()),
            "normal_abnormal_f1": macro_f1(self.gold_abnormal[chosen], self.predicted_abnormal[chosen]),
        }


def score_captions(hypotheses: Sequence[str], references: Sequence[str], gold_abnormal: Sequence[bool] | None = None,
                   extractor=None) -> CaptionScores:
    """Score each predicted caption against its gold caption.

    The gold normal/abnormal label is read from the gold caption by the same extractor that reads
    the prediction (``gold_abnormal=None``, as the re-implementation does), or given. An empty
    prediction scores 0 on clinical- and modality-term F1 (it names no term, so it matches none).
    """
    extractor = extractor or LexiconKeywordExtractor()
    gold_keywords = [extractor.extract(r) for r in references]
    predicted_keywords = [extractor.extract(h) for h in hypotheses]
    empty = np.array([not h.strip() for h in hypotheses], dtype=bool)
    if gold_abnormal is None:
        gold_abnormal = [not extractor.is_normal(r) for r in references]

    def term_f1(kind: str) -> np.ndarray:
        values = np.array([set_f1(getattr(p, kind), getattr(g, kind)) for p, g in zip(predicted_keywords, gold_keywords, strict=True)])
        return np.where(empty, 0.0, values)

    return CaptionScores(
        bleu=bleu_statistics(hypotheses, references),
        meteor=np.array([meteor(h, r) for h, r in zip(hypotheses, references, strict=True)]),
        rouge_l=np.array([rouge_l(h, r) for h, r in zip(hypotheses, references, strict=True)]),
        clinical_f1=term_f1("clinical"),
        modality_f1=term_f1("modality"),
        gold_abnormal=np.asarray(gold_abnormal, dtype=bool),
        predicted_abnormal=np.array([not extractor.is_normal(h) if h.strip() else False for h in hypotheses]),
    )
