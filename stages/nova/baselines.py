"""Offline baselines: a structured captioner from what the normative detector finds, and a
retrieval diagnoser over the pathology catalogue.

The captioner turns each detected region into words the way a report template would: plane and
sequence (from the detector's classifiers), then size, signal (region against its surround),
side, lobe and compartment (from the region's position and depth in the head's outline). The
diagnoser scores every catalogue entry by how well its typical look (signal on the sequence,
compartment, shape) matches those findings and how much of its presenting-complaint vocabulary
appears in the clinical history (TF-IDF cosine), plus a small prior for common entries, and
returns the five best names.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stages.nova.catalogue import CATALOGUE, SEQUENCE_PHRASES, SIGNAL_PHRASES, Pathology, frequency_weights


@dataclass(frozen=True)
class Finding:
    """One detected region in words and numbers."""

    signal: str        # hyper | hypo | iso
    size: str          # small | moderate | large
    side: str          # left | right | ""
    lobe: str
    compartment: str   # a catalogue location


@dataclass(frozen=True)
class SliceFindings:
    plane: str
    sequence: str
    findings: tuple[Finding, ...]


def region_signal(image: np.ndarray, mask: np.ndarray, box: np.ndarray) -> str:
    """hyper/hypo/iso: the box's central part against a ring around the box, inside the head."""
    x, y, w, h = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, image.shape[1]), min(y + h, image.shape[0])
    inner = np.zeros_like(mask)
    inner[y0 + (y1 - y0) // 4:y1 - (y1 - y0) // 4 + 1, x0 + (x1 - x0) // 4:x1 - (x1 - x0) // 4 + 1] = True
    inner &= mask
    box_mask = np.zeros_like(mask)
    box_mask[y0:y1, x0:x1] = True
    ring = ndimage.binary_dilation(box_mask, iterations=max(3, (x1 - x0 + y1 - y0) // 6)) & ~box_mask & mask
    if not inner.any() or not ring.any():
        return "iso"
    contrast = float(np.median(image[inner])) / max(float(np.median(image[ring])), 1e-6)
    return "hyper" if contrast > 1.12 else "hypo" if contrast < 0.88 else "iso"


def describe_region(image: np.ndarray, mask: np.ndarray, box: np.ndarray, plane: str, head_width_mm: float = 140.0) -> Finding:
    """Words for one region (box in the prepared slice's pixels)."""
    rows, cols = np.nonzero(mask)
    x, y, w, h = box
    centre_row, centre_col = y + h / 2, x + w / 2
    r = (centre_row - rows.min()) / max(np.ptp(rows), 1)
    c = (centre_col - cols.min()) / max(np.ptp(cols), 1)
    mm_per_pixel = head_width_mm / max(np.ptp(cols) + 1, 1) if plane != "sagittal" else 170.0 / max(np.ptp(cols) + 1, 1)
    diameter = max(w, h) * mm_per_pixel
    size = "small" if diameter < 10 else "moderate" if diameter < 25 else "large"
    side = "" if plane == "sagittal" or abs(c - 0.5) < 0.04 else ("right" if c < 0.5 else "left")
    if plane == "axial":
        lobe = "frontal" if r < 0.38 else "parietal" if r < 0.7 else "occipital"
    elif plane == "sagittal":
        lobe = "temporal" if r > 0.62 and c < 0.6 else "frontal" if c < 0.38 else "parietal" if c < 0.72 else "occipital"
    else:
        lobe = "temporal" if r > 0.55 else "parietal"
    depth = ndimage.distance_transform_edt(mask)
    row_index = int(np.clip(round(centre_row), 0, mask.shape[0] - 1))
    col_index = int(np.clip(round(centre_col), 0, mask.shape[1] - 1))
    relative_depth = depth[row_index, col_index] / max(depth.max(), 1e-6)
    if relative_depth < 0.06:
        compartment = "extra_axial"
    elif relative_depth < 0.22:
        compartment = "cortical"
    elif relative_depth < 0.55:
        compartment = "white_matter"
    else:
        compartment = "periventricular"
    return Finding(region_signal(image, mask, box), size, side, lobe, compartment)


def _location_words(finding: Finding) -> str:
    side = f"{finding.side} " if finding.side else ""
    return {
        "extra_axial": f"{side}{finding.lobe} convexity, extra-axial",
        "cortical": f"{side}{finding.lobe} cortex",
        "white_matter": f"{side}{finding.lobe} white matter",
        "periventricular": f"{side}periventricular white matter",
        "deep_grey": f"{side}deep grey matter",
        "intraventricular": f"{side}lateral ventricle",
    }[finding.compartment]


def structured_caption(findings: SliceFindings) -> str:
    """A one-sentence report in the benchmark's style from structured findings."""
    head = f"{findings.plane.capitalize()} {SEQUENCE_PHRASES.get(findings.sequence, findings.sequence)} image"
    if not findings.findings:
        return f"{head} shows no focal abnormality."
    first = findings.findings[0]
    signal = SIGNAL_PHRASES[first.signal]
    if len(findings.findings) > 2:
        return f"{head} shows multiple small {signal} foci in the {_location_words(first)}."
    text = f"{head} shows a {first.size} {signal} lesion in the {_location_words(first)}"
    if len(findings.findings) == 2:
        text += f" and a second {SIGNAL_PHRASES[findings.findings[1].signal]} focus in the {_location_words(findings.findings[1])}"
    return text + "."


# --------------------------------------------------------------------------- retrieval diagnoser
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 2]


class RetrievalDiagnoser:
    """Rank catalogue entries for a case from its findings and clinical history (see module docstring)."""

    def __init__(self, catalogue: tuple[Pathology, ...] = CATALOGUE, history_weight: float = 3.0,
                 prior_weight: float = 0.5) -> None:
        self.catalogue = catalogue
        self.history_weight = history_weight
        self.prior_weight = prior_weight
        documents = [Counter(_words(" ".join(entry.keywords) + " " + entry.name)) for entry in catalogue]
        document_frequency = Counter(word for document in documents for word in document)
        self.idf = {word: math.log((1 + len(documents)) / (1 + count)) + 1.0 for word, count in document_frequency.items()}
        self.vectors = [self._vector(document) for document in documents]
        self.prior = np.log(frequency_weights(len(catalogue)))

    def _vector(self, counts: Counter) -> dict[str, float]:
        vector = {w: c * self.idf.get(w, 0.0) for w, c in counts.items() if w in self.idf}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        return {w: v / norm for w, v in vector.items()}

    def scores(self, history: str, slices: list[SliceFindings]) -> np.ndarray:
        query = self._vector(Counter(_words(history)))
        out = np.zeros(len(self.catalogue))
        for index, entry in enumerate(self.catalogue):
            similarity = sum(query.get(w, 0.0) * v for w, v in self.vectors[index].items())
            look = 0.0
            for found in slices:
                for finding in found.findings[:1]:
                    look += 1.0 if entry.signal.get(found.sequence) == finding.signal else 0.0
                    look += 0.75 if entry.location == finding.compartment else 0.0
                look += 0.75 if (len(found.findings) > 2) == (entry.shape == "multifocal") else 0.0
            look /= max(len(slices), 1)
            out[index] = look + self.history_weight * similarity + self.prior_weight * (self.prior[index] - self.prior.max())
        return out

    def rank(self, history: str, slices: list[SliceFindings], count: int = 5) -> list[str]:
        """The ``count`` best catalogue names, best first (ties by catalogue order)."""
        order = np.argsort(-self.scores(history, slices), kind="stable")[:count]
        return [self.catalogue[i].name for i in order]
