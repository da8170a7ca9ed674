"""Training samples and evaluation queries as tensors: one per (image, class present), as AG-KD builds them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage.transform import resize

from stages.common.io import read_table
from stages.grounding.formats import read_image
from stages.grounding.model import BOS, EOS, PAD, Vocabulary
from stages.grounding.prompts import prompt
from stages.grounding.tokens import encode_target


def load_queries(ingest_folder: Path) -> tuple[pd.DataFrame, dict]:
    info = json.loads((ingest_folder / "dataset.json").read_text())
    return read_table(ingest_folder / "queries.csv", dtype={"image_id": str}), info


def query_boxes(row) -> list[list[float]]:
    return json.loads(row.boxes)


def training_rows(queries: pd.DataFrame, seen: list[str], data_pct: float, seed: int) -> pd.DataFrame:
    """Train + validate queries of seen classes (AG-KD trains on both); ``data_pct`` keeps a seeded random share."""
    rows = queries[queries.split.isin(["train", "validate"]) & queries.class_name.isin(seen)].reset_index(drop=True)
    if data_pct < 1.0:
        keep = max(1, int(round(len(rows) * data_pct)))
        rows = rows.iloc[np.sort(np.random.default_rng(seed).permutation(len(rows))[:keep])].reset_index(drop=True)
    return rows


def prompt_for(class_name: str, knowledge: dict[str, str], use_definition: bool) -> str:
    return prompt(class_name, knowledge[class_name] if use_definition else None)


def model_image(path: Path, input_size: int) -> np.ndarray:
    """The PNG as the model sees it: grey-scale in [0, 1], resized (anti-aliased) to ``input_size`` square (ours)."""
    image = read_image(path)
    return resize(image, (input_size, input_size), anti_aliasing=True, preserve_range=True).astype(np.float32)


def load_images(images_folder: Path, image_ids, input_size: int) -> dict[str, np.ndarray]:
    return {image_id: model_image(images_folder / f"{image_id}.png", input_size) for image_id in sorted(set(image_ids))}


def pad(sequences: list[list[int]], length: int | None = None) -> torch.Tensor:
    length = length or max(len(s) for s in sequences)
    out = torch.full((len(sequences), length), PAD, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = torch.tensor(s[:length], dtype=torch.long)
    return out


@dataclass
class Batch:
    images: torch.Tensor     # (n, 1, s, s)
    prompts: torch.Tensor    # (n, p) token ids
    answers: torch.Tensor    # (n, a + 1): <bos> answer <eos>, padded


def encode_rows(rows: pd.DataFrame, images: dict[str, np.ndarray], vocabulary: Vocabulary, knowledge: dict[str, str],
                use_definition: bool, max_prompt_tokens: int, bins: int) -> Batch:
    prompts, answers = [], []
    for row in rows.itertuples(index=False):
        prompts.append(vocabulary.encode(prompt_for(row.class_name, knowledge, use_definition))[:max_prompt_tokens])
        target = encode_target(row.class_name, query_boxes(row), row.width, row.height, bins)
        answers.append([BOS, *vocabulary.encode(target), EOS])
    stacked = np.stack([images[i] for i in rows.image_id])[:, None]
    return Batch(torch.from_numpy(stacked), pad(prompts), pad(answers))


def vocabulary_for(knowledge: dict[str, str], bins: int) -> Vocabulary:
    """Every word of every prompt the knowledge YAML can produce (class names included), and the location tokens."""
    return Vocabulary.from_texts([prompt(name, definition) for name, definition in knowledge.items()], bins)
