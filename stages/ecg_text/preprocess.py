"""ecg_text-preprocess: MERL's signal and report preprocessing, entity extraction, report embeddings cached once.

Every manifest record is read again through :func:`stages.ecg_text.io.read_ecg`, put in one lead
order (I, II, III, aVR, aVL, aVF, V1-V6, by name: MIMIC-IV-ECG stores aVF before aVL, which MERL's
downstream loaders undo by swapping rows 4 and 5), NaN/inf set to a local mean, resampled, cut to
the first ``duration_s`` seconds and min-max scaled per record. Reports are normalised as MERL does;
entities come from the rule/lexicon extractor, our stand-in for K-MERL's LLM step.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from pydantic import Field

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_table, write_npz, write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ecg_text.entities import ENTITIES, entity_vector, extract_entities, normalise_report
from stages.ecg_text.io import read_ecg
from stages.ecg_text.signal import prepare
from stages.ecg_text.text import encode_texts, load_text_encoder


class PreprocessParams(StrictModel):
    target_fs: float = Field(gt=0)
    duration_s: float = Field(gt=0)
    fill_window: int = Field(ge=1)
    text_batch_size: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def dataset_root(ctx: StageContext[PreprocessParams]) -> Path:
    import json

    info = json.loads(ctx.dep("interim/ingest/dataset.json").read_text())
    root = Path(info["root"])
    return root if root.is_absolute() else ctx.root / root


def preprocess(ctx: StageContext[PreprocessParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), keep_default_na=False)
    root = dataset_root(ctx)
    signals, kept = [], []
    for index, row in progress(manifest.iterrows(), "preprocessing ECGs", len(manifest)):
        with ctx.quarantine.guard(row["record_id"]) as outcome:
            signal, fs, leads = read_ecg(root / row["path"])
            try:
                signals.append(prepare(signal, fs, leads, p.target_fs, p.duration_s, p.fill_window).astype(np.float16))
            except ValueError as error:
                raise BadInputError(f"{row['path']}: {error}") from error
        if outcome.ok:
            kept.append(index)
    records = manifest.loc[kept, ["record_id", "dataset", "role", "split", "codes", "report"]].reset_index(drop=True)
    records["report_normalised"] = [normalise_report(text) for text in records["report"]]
    entity_lists = [extract_entities(text) for text in records["report"]]
    records["entities"] = [";".join(found) for found in entity_lists]
    started = time.perf_counter()
    encoder = load_text_encoder(str(device))
    embeddings = encode_texts(encoder, list(records["report_normalised"]), p.text_batch_size)
    text_seconds = time.perf_counter() - started
    with atomic_directory(ctx.out("interim/preprocessed")) as staging:
        write_npz(staging / "ecgs.npz", {"signals": np.stack(signals), "entities": np.asarray([entity_vector(e) for e in entity_lists], dtype=np.float32),
                                         "report_embeddings": embeddings})
        write_table(staging / "records.csv", records.drop(columns=["report"]))
        ctx.save_quarantine(staging / "quarantine.json")
    prevalence = dict(zip(ENTITIES, np.asarray([entity_vector(e) for e in entity_lists]).mean(axis=0).round(4).tolist()))
    write_json(ctx.out("metrics/preprocess.json"), {"records": len(records), "samples": int(signals[0].shape[1]),
                                                    "entity_prevalence": prevalence, "entity_vocabulary": list(ENTITIES)})
    return {"records": len(records), "text_encoding_texts_per_second": len(records) / max(text_seconds, 1e-9)}


if __name__ == "__main__":
    run_stage(preprocess)
