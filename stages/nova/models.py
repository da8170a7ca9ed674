"""One adapter interface for every model the benchmark scores.

A model sees a case (its clinical history and its slices) and returns, per slice, boxes
(``[x, y, w, h]`` pixels) with optional scores and a caption, and for the case five ranked
diagnoses. Problems (an answer that does not parse, an endpoint that gave up) never stop the
run: the affected output is empty and the problem is recorded with the prediction.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from stages.nova.baselines import Finding, RetrievalDiagnoser, SliceFindings, describe_region, structured_caption
from stages.nova.boxes import answer_to_pixel_xywh
from stages.nova.catalogue import CATALOGUE, LOCATIONS, PLANES, SEQUENCES, SIGNALS
from stages.nova.normative import NormativeModel, boxes_from_anomaly_map, prepare
from stages.nova.openai_client import (
    CAPTION_PROMPT,
    DIAGNOSIS_PROMPT,
    AnswerParseError,
    ChatClient,
    EndpointError,
    image_message,
    localisation_prompt,
    parse_boxes,
    parse_caption,
    parse_diagnoses,
    text_message,
)


@dataclass
class SliceInput:
    image_id: str
    pixels: np.ndarray          # float32 in [0, 1]
    png_path: Path


@dataclass
class CaseInput:
    case_id: str
    clinical_history: str
    slices: list[SliceInput]
    gold_captions: list[str] = field(default_factory=list)  # only for diagnosis_findings: gold


@dataclass
class SlicePrediction:
    image_id: str
    boxes: np.ndarray                      # (m, 4) [x, y, w, h] pixels
    scores: np.ndarray | None              # (m,) or None
    caption: str
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"image_id": self.image_id, "boxes": np.round(self.boxes, 3).tolist(),
                "scores": None if self.scores is None else np.round(self.scores, 6).tolist(),
                "caption": self.caption, "problems": self.problems}


@dataclass
class CasePrediction:
    case_id: str
    slices: list[SlicePrediction]
    diagnoses: list[str]
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"case_id": self.case_id, "diagnoses": self.diagnoses, "problems": self.problems,
                "slices": [s.to_json() for s in self.slices]}


class ModelAdapter(Protocol):
    name: str

    def predict_case(self, case: CaseInput) -> CasePrediction: ...


def stable_seed(seed: int, *parts: str) -> int:
    """A per-item seed that does not depend on processing order or Python's hash salt."""
    return (seed * 1_000_003 + zlib.crc32("/".join(parts).encode())) % (2**31)


# --------------------------------------------------------------------------- baselines
class RandomBoxesModel:
    """Chance level: 1 to ``max_boxes`` uniformly placed boxes (5-25 % of the image side) with
    random scores, a caption with random attributes, five random catalogue diagnoses."""

    name = "random_boxes"

    def __init__(self, seed: int, max_boxes: int) -> None:
        self.seed, self.max_boxes = seed, max_boxes

    def predict_case(self, case: CaseInput) -> CasePrediction:
        slices = []
        for item in case.slices:
            rng = np.random.default_rng(stable_seed(self.seed, case.case_id, item.image_id))
            height, width = item.pixels.shape
            count = int(rng.integers(1, self.max_boxes + 1))
            w, h = rng.uniform(0.05, 0.25, count) * width, rng.uniform(0.05, 0.25, count) * height
            boxes = np.column_stack([rng.uniform(0, 1, count) * (width - w), rng.uniform(0, 1, count) * (height - h), w, h])
            finding = Finding(str(rng.choice(SIGNALS)), str(rng.choice(["small", "moderate", "large"])),
                              str(rng.choice(["left", "right"])), str(rng.choice(["frontal", "parietal", "temporal", "occipital"])),
                              str(rng.choice([loc for loc in LOCATIONS if loc != "deep_grey"])))
            caption = structured_caption(SliceFindings(str(rng.choice(PLANES)), str(rng.choice(SEQUENCES)), (finding,)))
            slices.append(SlicePrediction(item.image_id, boxes, rng.uniform(0, 1, count), caption))
        rng = np.random.default_rng(stable_seed(self.seed, case.case_id))
        diagnoses = [CATALOGUE[i].name for i in rng.choice(len(CATALOGUE), size=5, replace=False)]
        return CasePrediction(case.case_id, slices, diagnoses)


class NormativeBaseline:
    """The normative detector's boxes, the structured captioner, the retrieval diagnoser."""

    name = "normative"

    def __init__(self, model: NormativeModel, min_area: int, max_boxes: int,
                 diagnoser: RetrievalDiagnoser | None = None) -> None:
        self.model, self.min_area, self.max_boxes = model, min_area, max_boxes
        self.diagnoser = diagnoser or RetrievalDiagnoser()

    def analyse(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, SliceFindings, np.ndarray]:
        """(boxes in slice pixels, scores, structured findings, anomaly map at the model's size)."""
        size = self.model.config.size
        image, mask = prepare(pixels, size)
        sequence, plane = self.model.classify(image, mask)
        anomaly = self.model.anomaly_map(image, mask, sequence)
        small_boxes, scores = boxes_from_anomaly_map(anomaly, self.model.threshold, self.min_area, self.max_boxes, (size, size))
        findings = tuple(describe_region(image, mask, box, plane) for box in small_boxes)
        scale = np.array([pixels.shape[1] / size, pixels.shape[0] / size] * 2)
        return small_boxes * scale, scores, SliceFindings(plane, sequence, findings), anomaly

    def predict_case(self, case: CaseInput) -> CasePrediction:
        slices, found = [], []
        for item in case.slices:
            boxes, scores, findings, _ = self.analyse(item.pixels)
            found.append(findings)
            slices.append(SlicePrediction(item.image_id, boxes, scores, structured_caption(findings)))
        return CasePrediction(case.case_id, slices, self.diagnoser.rank(case.clinical_history, found))


# --------------------------------------------------------------------------- HTTP adapter
class OpenAICompatibleModel:
    """Any OpenAI-compatible chat endpoint with vision (Qwen-VL behind vLLM, GPT-4o, ...).

    Per slice one localisation and one captioning request; per case one diagnosis request with
    the clinical history and the findings (the model's own captions, or the gold captions when
    ``diagnosis_findings == "gold"``).
    """

    name = "openai_compatible"

    def __init__(self, client: ChatClient, diagnosis_findings: str, box_format: str = "yxyx_1000",
                 name: str = "openai_compatible") -> None:
        self.client, self.diagnosis_findings, self.box_format = client, diagnosis_findings, box_format
        self.name = name

    def _ask(self, messages, parse, what: str, problems: list[str]):
        try:
            answer = self.client.complete_answer(messages)
        except EndpointError as error:
            problems.append(f"{what}: endpoint error: {error}")
            return None
        if answer.truncated:
            problems.append(f"{what}: truncated at the token limit (finish_reason length)")
        if answer.refusal is not None and not answer.text.strip():
            problems.append(f"{what}: refused: {answer.refusal}")
            return None
        try:
            return parse(answer.text)
        except AnswerParseError as error:
            problems.append(f"{what}: unparseable answer: {error}")
            return None

    def predict_case(self, case: CaseInput) -> CasePrediction:
        slices = []
        for item in case.slices:
            png = item.png_path.read_bytes()
            problems: list[str] = []
            parsed = self._ask(image_message(localisation_prompt(self.box_format), png), parse_boxes, f"{item.image_id} boxes",
                               problems)
            height, width = item.pixels.shape
            if parsed is None:
                boxes, scores = np.zeros((0, 4)), None
            else:
                boxes = answer_to_pixel_xywh(parsed[0], width, height, self.box_format)
                scores = None if parsed[1] is None else np.asarray(parsed[1], dtype=float)
            caption = self._ask(image_message(CAPTION_PROMPT, png), parse_caption, f"{item.image_id} caption", problems) or ""
            slices.append(SlicePrediction(item.image_id, boxes, scores, caption, problems))
        captions = case.gold_captions if self.diagnosis_findings == "gold" else [s.caption for s in slices]
        findings = " ".join(c for c in captions if c) or "not available"
        problems: list[str] = []
        diagnoses = self._ask(text_message(DIAGNOSIS_PROMPT.format(history=case.clinical_history, findings=findings)),
                              parse_diagnoses, f"{case.case_id} diagnosis", problems) or []
        return CasePrediction(case.case_id, slices, diagnoses, problems)
