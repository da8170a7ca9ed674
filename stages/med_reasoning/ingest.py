"""med_reasoning-ingest: read multiple-choice question files (first generated when synthetic), write a validated manifest.

A source folder holds ``train.jsonl`` (or ``.parquet``), ``test.jsonl`` (held-out, in domain)
and ``ood/*.jsonl`` (out-of-domain sets), each in MedQA's or AlphaMed19K's format
(:mod:`stages.med_reasoning.formats`). With ``source: synthetic`` the clinical-calculation
questions of :mod:`stages.med_reasoning.synthetic` are first written there as MedQA JSONL; either
way every file is read by the same reader.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.common.atomic import write_text
from stages.common.badinput import BadInputError
from stages.common.ingest import materialise_source, save_ingest
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.stage import Metrics, StageContext, run_stage
from stages.med_reasoning import synthetic
from stages.med_reasoning.formats import MAX_OPTIONS, MIN_OPTIONS, Question, iter_records, parse_record, to_medqa_record

SPLIT_FILES = {"train": "train", "test_in": "test"}
OOD_FOLDER = "ood"


class IngestParams(StrictModel):
    source: str                                   # "synthetic" or a folder with train.jsonl, test.jsonl, ood/*.jsonl
    train_per_form: int = Field(ge=1)             # synthetic: training questions per form (short, long)
    test_per_form: int = Field(ge=1)              # synthetic: held-out in-domain questions per form
    ood_per_set: int = Field(ge=1)                # synthetic: questions in each out-of-domain set
    options: int = Field(ge=MIN_OPTIONS, le=MAX_OPTIONS)
    ood_options: int = Field(ge=MIN_OPTIONS, le=MAX_OPTIONS)   # the "more options" out-of-domain set
    irrelevant_facts: tuple[int, int]             # (min, max) distracting sentences in a long vignette

    @model_validator(mode="after")
    def consistent(self) -> IngestParams:
        low, high = self.irrelevant_facts
        if not 0 <= low <= high:
            raise ValueError(f"irrelevant_facts: need 0 <= min <= max, got {self.irrelevant_facts}")
        if self.ood_options <= self.options:
            raise ValueError(f"ood_options ({self.ood_options}) must exceed options ({self.options})")
        return self


def write_jsonl(path: Path, questions: list[Question]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(to_medqa_record(q), sort_keys=True) + "\n" for q in questions))


def write_synthetic_dataset(root: Path, p: IngestParams, seed: int) -> None:
    """train.jsonl, test.jsonl and two out-of-domain sets (unseen templates; more options) under ``root``."""
    rng = np.random.default_rng(seed)
    forms, facts = ["short", "long"], p.irrelevant_facts
    write_jsonl(root / "train.jsonl", synthetic.generate_split("train", synthetic.IN_DOMAIN, p.train_per_form, forms, p.options, facts, rng))
    write_jsonl(root / "test.jsonl", synthetic.generate_split("test", synthetic.IN_DOMAIN, p.test_per_form, forms, p.options, facts, rng))
    write_jsonl(root / OOD_FOLDER / "unseen_templates.jsonl",
                synthetic.generate_split("ood-templates", synthetic.OUT_OF_DOMAIN, p.ood_per_set, ["long"], p.options, facts, rng))
    write_jsonl(root / OOD_FOLDER / "more_options.jsonl",
                synthetic.generate_split("ood-options", synthetic.IN_DOMAIN, p.ood_per_set, ["long"], p.ood_options, facts, rng))


def question_files(root: Path) -> list[tuple[str, Path]]:
    """(split, file) for every question file of a source folder; train and test are required."""
    found = []
    for split, stem in SPLIT_FILES.items():
        candidates = [root / f"{stem}{suffix}" for suffix in (".jsonl", ".parquet") if (root / f"{stem}{suffix}").is_file()]
        if not candidates:
            raise BadInputError(f"{root}: no {stem}.jsonl or {stem}.parquet")
        found.append((split, candidates[0]))
    found += [("test_ood", path) for path in sorted((root / OOD_FOLDER).glob("*")) if path.suffix in (".jsonl", ".parquet")]
    return found


def manifest_row(question: Question, split: str, path: Path, line: int, root: Path) -> dict:
    return {
        "id": question.id, "split": split, "set": split if split != "test_ood" else f"ood_{path.stem}",
        "file": path.relative_to(root).as_posix(), "line": line, "source_dataset": question.source_dataset,
        "template": question.extra.get("template", ""), "steps": int(question.extra.get("steps", 0)),
        "subset": question.extra.get("subset", question.source_dataset), "n_options": len(question.options),
        "answer": question.answer, "answer_in_options": question.answer in question.options,
        "question_words": len(question.question.split()), "question": question.question,
        "options_json": json.dumps(question.options, sort_keys=True),
    }


def read_questions(ctx: StageContext[IngestParams], root: Path) -> pd.DataFrame:
    """Every question of every file; bad lines and repeated ids fail, or are quarantined under ``skip``."""
    rows, seen = [], {}
    for split, path in question_files(root):
        for line, record, where in iter_records(path):
            with ctx.quarantine.guard(f"{path.relative_to(root).as_posix()} line {line}") as outcome:
                if isinstance(record, BadInputError):
                    raise record
                question = parse_record(record, f"{path.stem}-{line}", path.stem, where)
                if question.id in seen:
                    raise BadInputError(f"{where}: id {question.id!r} repeats {seen[question.id]}")
            if outcome.ok:
                seen[question.id] = where
                rows.append(manifest_row(question, split, path, line, root))
    if not rows:
        raise BadInputError(f"{root}: no readable questions")
    return pd.DataFrame(rows)


def manifest_expectations() -> list[tuple[str, dict]]:
    return [
        ("expect_column_values_to_be_unique", {"column": "id"}),
        ("expect_column_values_to_be_in_set", {"column": "answer_in_options", "value_set": [True]}),
        ("expect_column_values_to_be_between", {"column": "n_options", "min_value": MIN_OPTIONS, "max_value": MAX_OPTIONS}),
        ("expect_column_values_to_be_between", {"column": "question_words", "min_value": 1}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": ["train", "test_in", "test_ood"]}),
        ("expect_column_values_to_not_be_null", {"column": "answer"}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    root = materialise_source(ctx, p.source, lambda staging: write_synthetic_dataset(staging, p, ctx.common.seed))
    manifest = read_questions(ctx, root)
    save_ingest(ctx, manifest, "med_reasoning_manifest", manifest_expectations(),
                {"root": portable_path(root, ctx.root), "source": p.source,
                 "source_datasets": sorted(manifest["source_dataset"].unique())})
    counts = manifest["split"].value_counts().to_dict()
    return {"questions": len(manifest), **{f"questions_{k}": v for k, v in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
