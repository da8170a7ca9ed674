"""The rule-based reward: 1 when the completion's final stated option letter is the answer, else 0.

AlphaMed rewards only the final answer (no reward model, no format bonus). The project page's
worked example ends ``The final answer is: \\boxed{C}``; at smoke scale the prompt asks for the
letter alone, so the parser also reads ``Answer: C``, ``(C)`` and a lone ``C.``.

Reading order: an explicit answer (``\\boxed{C}``, ``answer is C``, ``Answer: (C)``) wins over a
bare mention (``(C)``, ``option C``, a line that is only ``C.``/``C) text``); within a tier the
last one in the text wins, so a model that changes its mind is scored on its final answer. A
completion that merely lists the options (``A. ...\\nB. ...``) states no answer and gets None.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=32)
def _patterns(options: str) -> tuple[list[re.Pattern[str]], list[re.Pattern[str]], re.Pattern[str]]:
    letter = f"([{re.escape(options)}])"
    end = r"(?![A-Za-z0-9'])"  # the C of "Cardiomegaly" or "C's" is not an answer
    explicit = [
        re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{\s*)?\(?\s*" + letter + end),
        re.compile(r"(?i:answer)\s*(?:(?i:is)\s*)?[:\-]?\s*(?:(?i:option|choice)\s*)?[\(\[]?\s*" + letter + end),
    ]
    mentions = [
        re.compile(r"\(\s*" + letter + r"\s*\)"),
        re.compile(r"(?i:option|choice)\s+" + letter + end),
    ]
    line_start = re.compile(r"(?m)^\s*\**" + letter + r"\**\s*(?:[.):]|$)")
    return explicit, mentions, line_start


def _last_match(patterns: Sequence[re.Pattern[str]], text: str) -> str | None:
    found = [(m.start(1), m.group(1)) for pattern in patterns for m in pattern.finditer(text)]
    return max(found)[1] if found else None


def extract_choice(text: str, options: str = "ABCDE") -> str | None:
    """The option letter ``text`` finally chooses, or None when it states none."""
    if not options or not options.isalpha() or not options.isupper():
        raise ValueError(f"options must be upper-case letters, got {options!r}")
    explicit, mentions, line_start = _patterns(options)
    chosen = _last_match(explicit, text)
    if chosen is not None:
        return chosen
    chosen = _last_match(mentions, text)
    if chosen is not None:
        return chosen
    at_line_start = [m.group(1) for m in line_start.finditer(text)]
    if len(set(at_line_start)) == 1:  # several different letters at line starts: a listing, not an answer
        return at_line_start[-1]
    return None


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes plain strings, or chat messages for conversational datasets."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def reward(completions: Sequence[Any], answers: Sequence[str], options: str = "ABCDE") -> list[float]:
    """1.0 for each completion whose chosen letter equals its answer letter, else 0.0."""
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
    return [float(extract_choice(completion_text(c), options) == a) for c, a in zip(completions, answers)]
