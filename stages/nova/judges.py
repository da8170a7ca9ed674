"""Pluggable judges: is a predicted diagnosis the gold one, and which keywords does a caption hold.

The paper used GPT-4o for both. The offline defaults are deterministic and labelled so:
:class:`SynonymJudge` (catalogue synonyms and spelling normalisation) and the lexicon keyword
extractor of :mod:`stages.nova.text_metrics`. The LLM judges ask any OpenAI-compatible endpoint
(through the cached client); an answer that does not parse counts as "no match" / "no keyword"
and is counted.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stages.nova.catalogue import CATALOGUE, Pathology, normalise_diagnosis, synonym_index
from stages.nova.openai_client import (
    KEYWORD_PROMPT,
    MATCH_PROMPT,
    RANKED_MATCH_PROMPT,
    AnswerParseError,
    ChatClient,
    EndpointError,
    parse_keywords,
    parse_top_hits,
    parse_yes_no,
    text_message,
)
from stages.nova.text_metrics import MODALITY_TERMS, Keywords, LexiconKeywordExtractor, tokenise


class SynonymJudge:
    """Deterministic diagnosis matcher (offline default; the paper used GPT-4o).

    Two names match when, after normalisation (case, punctuation, British/American spelling,
    filler words), they are equal, or both resolve to the same catalogue entry (a name or
    synonym equal to, or contained as a phrase in, the text; the longest such phrase wins), or
    their word sets overlap by at least ``jaccard`` (for names outside the catalogue).
    """

    name = "synonym matcher (deterministic, offline default)"

    def __init__(self, catalogue: tuple[Pathology, ...] = CATALOGUE, jaccard: float = 0.75) -> None:
        self.index = synonym_index(catalogue)
        self.phrases = sorted(self.index, key=lambda p: (-len(p), p))
        self.jaccard = jaccard
        self.failures = 0

    def resolve(self, text: str) -> str | None:
        """The catalogue id a diagnosis names, if any."""
        normal = normalise_diagnosis(text)
        if normal in self.index:
            return self.index[normal]
        padded = f" {normal} "
        for phrase in self.phrases:
            if len(phrase) > 3 and f" {phrase} " in padded:
                return self.index[phrase]
        return None

    def match(self, predicted: str, gold: str) -> bool:
        a, b = normalise_diagnosis(predicted), normalise_diagnosis(gold)
        if not a or not b:
            return False
        if a == b:
            return True
        ra, rb = self.resolve(predicted), self.resolve(gold)
        if ra is not None and rb is not None:
            return ra == rb
        wa, wb = set(a.split()), set(b.split())
        return len(wa & wb) / len(wa | wb) >= self.jaccard


class LLMJudge:
    """Diagnosis matcher that asks an OpenAI-compatible endpoint (cached); problems count as no match."""

    name = "LLM judge (OpenAI-compatible endpoint)"

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.failures = 0

    def match(self, predicted: str, gold: str) -> bool:
        if not predicted.strip():
            return False
        try:
            return parse_yes_no(self.client.complete(text_message(MATCH_PROMPT.format(gold=gold, candidate=predicted))))
        except (AnswerParseError, EndpointError):
            self.failures += 1
            return False


class LLMRankedJudge:
    """The re-implementation's diagnosis protocol: one call per case with the gold diagnosis and the five
    ranked candidates, answering Top-1 and Top-5 at once, told to ignore specificity and etiology
    differences. Problems count as misses (``failures``)."""

    name = "LLM ranked judge, one call per case, specificity and etiology ignored (re-implementation's protocol)"

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.failures = 0

    def hits(self, names: Sequence[str], gold: str) -> tuple[bool, bool]:
        names = [n for n in names if n.strip()]
        if not names:
            return False, False
        candidates = "\n".join(f"{i + 1}. {n}" for i, n in enumerate(names[:5]))
        try:
            return parse_top_hits(self.client.complete(text_message(RANKED_MATCH_PROMPT.format(gold=gold, candidates=candidates))))
        except (AnswerParseError, EndpointError):
            self.failures += 1
            return False, False


class LLMKeywordExtractor:
    """Keyword extraction by an OpenAI-compatible endpoint (the paper's method); modality terms
    are the extracted keywords' tokens in the paper's modality set, clinical terms the rest.
    Normal/abnormal is still decided by the lexicon rule."""

    name = "LLM keyword extractor (OpenAI-compatible endpoint)"

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.failures = 0
        self._lexicon = LexiconKeywordExtractor()

    def extract(self, text: str) -> Keywords:
        if not text.strip():
            return Keywords(frozenset(), frozenset())
        try:
            keywords = parse_keywords(self.client.complete(text_message(KEYWORD_PROMPT.format(caption=text))))
        except (AnswerParseError, EndpointError):
            self.failures += 1
            return Keywords(frozenset(), frozenset())
        modality = {t for k in keywords for t in tokenise(k) if t in MODALITY_TERMS}
        clinical = {k for k in keywords if not set(tokenise(k)) <= MODALITY_TERMS}
        return Keywords(frozenset(clinical), frozenset(modality))

    def is_normal(self, text: str) -> bool:
        return self._lexicon.is_normal(text)


def top_k_hits(judge, predictions: Sequence[Sequence[str]], golds: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 hit, top-k hit) per case: whether the first / any of the first ``k`` names matches the gold."""
    top1, topk = [], []
    for names, gold in zip(predictions, golds, strict=True):
        if hasattr(judge, "hits"):  # one call judges the whole ranked list
            first, any_hit = judge.hits(list(names)[:k], gold)
            top1.append(first)
            topk.append(any_hit)
            continue
        hits = [judge.match(name, gold) for name in list(names)[:k]]
        top1.append(bool(hits[0]) if hits else False)
        topk.append(any(hits))
    return np.array(top1, dtype=bool), np.array(topk, dtype=bool)
