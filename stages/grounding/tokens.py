"""Florence-2's location tokens: quantise boxes into ``<loc_i>`` targets and parse answers back.

A target is ``{class}<loc_x1><loc_y1><loc_x2><loc_y2>`` once per box, each coordinate quantised
as ``int(x / w * bins)`` (AG-KD's task format), clamped to ``bins - 1``. Parsing follows
Florence-2's phrase-grounding post-processing: a phrase followed by four location tokens, each
token read back at its bin centre, ``(i + 0.5) * w / bins`` (Florence's ``BoxQuantizer``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

BOX_PATTERN = re.compile(r"([^<>]*?)((?:<loc_\d+>){4})")
LOC_PATTERN = re.compile(r"<loc_(\d+)>")


class Decoded(list):
    """``[(phrase, (x1, y1, x2, y2)), ...]`` in pixels, with ``unparsed``: pieces that were not a phrase and a box."""

    def __init__(self, pairs=(), unparsed: int = 0) -> None:
        super().__init__(pairs)
        self.unparsed = unparsed


def quantise(value: float, size: float, bins: int = 1000) -> int:
    return int(min(max(int(value / size * bins), 0), bins - 1))


def encode_target(class_name: str, boxes: Sequence[Sequence[float]], width: float, height: float, bins: int = 1000) -> str:
    """The target string for one (image, class) sample; ``boxes`` are pixel ``(x1, y1, x2, y2)``."""
    parts = []
    for x1, y1, x2, y2 in boxes:
        locs = (quantise(x1, width, bins), quantise(y1, height, bins), quantise(x2, width, bins), quantise(y2, height, bins))
        parts.append(class_name + "".join(f"<loc_{i}>" for i in locs))
    return "".join(parts)


def decode(text: str, width: float, height: float, bins: int = 1000) -> Decoded:
    """Phrases and pixel boxes of a generated answer; never raises on a malformed one.

    Every maximal run of four location tokens with the text before it is a (phrase, box);
    a location token out of range, a box with x2 < x1 or y2 < y1, or leftover location tokens
    or text count as ``unparsed``.
    """
    text = text.replace("</s>", "").replace("<s>", "").replace("<pad>", "")
    pairs, unparsed, end = [], 0, 0
    scale = np.array([width, height, width, height], dtype=np.float64) / bins
    for match in BOX_PATTERN.finditer(text):
        if text[end:match.start()].strip():
            unparsed += 1
        end = match.end()
        phrase = match.group(1).strip()
        bins_read = [int(i) for i in LOC_PATTERN.findall(match.group(2))]
        if any(i >= bins for i in bins_read) or bins_read[2] < bins_read[0] or bins_read[3] < bins_read[1]:
            unparsed += 1
            continue
        box = (np.array(bins_read, dtype=np.float64) + 0.5) * scale
        pairs.append((phrase, tuple(float(v) for v in box)))
    if text[end:].strip():
        unparsed += 1
    return Decoded(pairs, unparsed)
