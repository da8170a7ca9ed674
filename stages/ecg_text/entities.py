"""Report normalisation as MERL does it, and the rule/lexicon entity extractor.

The extractor is OUR STAND-IN FOR K-MERL'S LLM STEP (the paper has an LLM turn each free-text
report into structured knowledge once, offline; its prompt, model and entity vocabulary are not
public). It maps synonyms to an entity name and drops findings under a negation cue ("no",
"without", "absence of", "negative for", "not") in the same clause.
"""
from __future__ import annotations

import re

ENTITY_PATTERNS: dict[str, str] = {
    "anterior_st_elevation": r"\b(anterior|anteroseptal)\b[^.;]*?\b(st|injury|infarction)\b"
                             r"|\bst[\s-]?(segment\s)?elevation\b[^.;]*?\b(anterior|anteroseptal|v1-v4|v1 to v4)\b",
    "atrial_fibrillation": r"\batrial fibrillation\b|\ba-?fib\b|\baf\b|\bfibrillazione atriale\b",
    "inferior_st_elevation": r"\binferior\b[^.;]*?\b(st|injury|infarction|mi)\b"
                             r"|\bst[\s-]?(segment\s)?elevation\b[^.;]*?\b(inferior|ii, iii|avf)\b",
    "lateral_t_inversion": r"\bt[\s-]?wave\s+inversion\b[^.;]*?\blateral|\blateral\s+t[\s-]?wave\s+inversion\b"
                           r"|\binverted t[\s-]?waves?\b[^.;]*?\b(lateral|avl|v5|v6)\b|\bnegative t[\s-]?waves?\s+laterally\b",
    "normal_ecg": r"\bnormal (ecg|electrocardiogram)\b|\bwithin normal limits\b|\becg normale\b",
    "sinus_rhythm": r"\bsinus rhythm\b|\britmo sinusale\b",
    "sinus_tachycardia": r"\bsinus tachycardia\b|\btachycardia, sinus\b|\bsinus rhythm, rapid rate\b|\btachicardia sinusale\b",
    "wide_qrs": r"\b(wide|broad)\s+qrs\b|\bqrs\s+widening\b|\bbundle branch block\b|\b[lr]bbb\b"
                r"|\bintraventricular conduction delay\b|\bivcd\b",
}
ENTITIES: tuple[str, ...] = tuple(sorted(ENTITY_PATTERNS))
_NEGATION = re.compile(r"\b(no|not|without|absence of|negative for|denies|non)\b")
_CLAUSE_END = re.compile(r"[.;,]")
_COMPILED = {name: re.compile(pattern) for name, pattern in ENTITY_PATTERNS.items()}


def normalise_report(text: str) -> str:
    """MERL's report cleaning: lower-case, 'ekg' -> 'ecg', whitespace collapsed."""
    lowered = str(text).lower().replace("ekg", "ecg")
    return re.sub(r"\s+", " ", lowered).strip()


def _negated(text: str, start: int) -> bool:
    """A negation cue between the start of the clause holding ``start`` and ``start``."""
    clause_start = max((m.end() for m in _CLAUSE_END.finditer(text, 0, start)), default=0)
    return _NEGATION.search(text, clause_start, start) is not None


def extract_entities(report: str) -> list[str]:
    """Sorted entity names the report asserts; negated findings are excluded."""
    text = normalise_report(report)
    found = set()
    for name, pattern in _COMPILED.items():
        if any(not _negated(text, match.start()) for match in pattern.finditer(text)):
            found.add(name)
    return sorted(found)


def entity_vector(entities: list[str]) -> list[int]:
    """0/1 per entity of :data:`ENTITIES`."""
    present = set(entities)
    return [int(name in present) for name in ENTITIES]
