"""Multiple-choice question files: MedQA-style JSONL and AlphaMed19K's question/answer rows.

MedQA (jind11/MedQA, the ``questions/US/*.jsonl`` files; the same fields on the Hub copies such
as GBaker/MedQA-USMLE-4-options): one JSON object per line with ``question``, ``options`` (a
mapping from letter to option text), ``answer_idx`` (the letter), ``answer`` (the option text)
and ``meta_info``. MedQA has no id field: a question's id is ``<file stem>-<line number>``
unless the record carries ``id``.

AlphaMed19K (che111/AlphaMed19K): the study note records ``question`` and ``answer`` columns;
the card was not reachable here, so we read (ours) a ``question`` whose option lines
``A. text`` follow the stem, an ``answer`` holding the letter (optionally followed by the option
text), and the source dataset from ``source`` or ``dataset`` when present. Rows come from JSONL
or parquet.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.common.badinput import BadInputError

OPTION_LETTERS = "ABCDEFGHIJ"
MIN_OPTIONS, MAX_OPTIONS = 2, 10
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s+(.+?)\s*$")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    options: dict[str, str]
    answer: str
    source_dataset: str
    extra: dict[str, Any] = field(default_factory=dict)  # generator metadata (template, steps, subset)

    @property
    def letters(self) -> str:
        return "".join(self.options)


def _check(question: Question, where: str) -> Question:
    if not question.question.strip():
        raise BadInputError(f"{where}: empty question")
    letters = list(question.options)
    if not MIN_OPTIONS <= len(letters) <= MAX_OPTIONS:
        raise BadInputError(f"{where}: {len(letters)} options; expected {MIN_OPTIONS} to {MAX_OPTIONS}")
    if letters != list(OPTION_LETTERS[:len(letters)]):
        raise BadInputError(f"{where}: option letters {letters} must run A, B, C, ... in order")
    if any(not str(text).strip() for text in question.options.values()):
        raise BadInputError(f"{where}: an option's text is empty")
    if question.answer not in question.options:
        raise BadInputError(f"{where}: answer {question.answer!r} is not among the options {letters}")
    return question


def medqa_question(record: dict[str, Any], default_id: str, default_source: str, where: str) -> Question:
    """One MedQA-style record (``question``, ``options``, ``answer_idx``) as a checked Question."""
    missing = [key for key in ("question", "options", "answer_idx") if key not in record]
    if missing:
        raise BadInputError(f"{where}: missing key(s) {missing}")
    options = record["options"]
    if not isinstance(options, dict):
        raise BadInputError(f"{where}: options must map letters to text, got {type(options).__name__}")
    question = Question(
        id=str(record.get("id", default_id)), question=str(record["question"]),
        options={str(k).strip(): str(v) for k, v in options.items()}, answer=str(record["answer_idx"]).strip(),
        source_dataset=str(record.get("source_dataset", default_source)),
        extra={k: record[k] for k in ("template", "steps", "subset", "split") if k in record},
    )
    _check(question, where)
    if "answer" in record and str(record["answer"]).strip() != question.options[question.answer].strip():
        raise BadInputError(f"{where}: answer text {record['answer']!r} is not option {question.answer} "
                            f"({question.options[question.answer]!r})")
    return question


def split_stem_and_options(text: str, where: str) -> tuple[str, dict[str, str]]:
    """A question whose trailing lines are ``A. option`` into (stem, options)."""
    lines = text.rstrip().splitlines()
    options: dict[str, str] = {}
    while lines:
        match = _OPTION_LINE.match(lines[-1])
        if not match:
            break
        options[match.group(1)] = match.group(2)
        lines.pop()
    if not options:
        raise BadInputError(f"{where}: no option lines ('A. text') after the question stem")
    return "\n".join(lines).strip(), dict(sorted(options.items()))


def alphamed_question(record: dict[str, Any], default_id: str, default_source: str, where: str) -> Question:
    """One AlphaMed19K row (``question`` with option lines, ``answer`` letter) as a checked Question."""
    missing = [key for key in ("question", "answer") if key not in record]
    if missing:
        raise BadInputError(f"{where}: missing key(s) {missing}")
    stem, options = split_stem_and_options(str(record["question"]), where)
    answer = re.match(r"^\s*\(?([A-J])\b", str(record["answer"]))
    if answer is None:
        raise BadInputError(f"{where}: answer {record['answer']!r} does not start with an option letter")
    source = record.get("source") or record.get("dataset") or default_source
    return _check(Question(str(record.get("id", default_id)), stem, options, answer.group(1), str(source)), where)


def parse_record(record: Any, default_id: str, default_source: str, where: str) -> Question:
    """Either format, told apart by MedQA's ``options`` mapping."""
    if not isinstance(record, dict):
        raise BadInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "options" in record:
        return medqa_question(record, default_id, default_source, where)
    return alphamed_question(record, default_id, default_source, where)


def iter_records(path: Path) -> Iterator[tuple[int, Any, str]]:
    """(line or row number from 1, raw record or a BadInputError to raise, where) for a JSONL or parquet file."""
    if path.suffix == ".parquet":
        import pandas as pd

        for number, record in enumerate(pd.read_parquet(path).to_dict(orient="records"), start=1):
            yield number, record, f"{path.name} row {number}"
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                yield number, json.loads(line), where
            except json.JSONDecodeError as error:
                yield number, BadInputError(f"{where}: not JSON ({error.msg} at column {error.colno})"), where


def to_medqa_record(question: Question) -> dict[str, Any]:
    """The MedQA JSONL record of a question (how the synthetic generator writes its files)."""
    return {"id": question.id, "question": question.question, "options": question.options,
            "answer": question.options[question.answer], "answer_idx": question.answer,
            "source_dataset": question.source_dataset, **question.extra}


def format_prompt(question: Question, style: str) -> str:
    """The user turn: stem, option lines, and the answer instruction (ours) for ``letter`` or ``boxed``."""
    lines = [question.question.strip(), *(f"{letter}. {text}" for letter, text in question.options.items())]
    if style == "letter":
        lines.append("Answer with the letter of the correct option only.")
    elif style == "boxed":
        lines.append("Think step by step, then end with: The final answer is: \\boxed{<letter>}.")
    else:
        raise ValueError(f"prompt style must be 'letter' or 'boxed', got {style!r}")
    return "\n".join(lines)
