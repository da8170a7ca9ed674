"""Online test-time adaptation of the promptable model: SAM-TTA (SBCT + IMA), its ablations and the baselines.

Protocol (official): batch 1, one pass over a shuffled stream; per image one optimisation step,
the EMA update of the teacher, then the updated student (SBCT applied) predicts that image.
IMA as coded: LoRA (rank 4, q and v of every encoder block) and the prompt encoder train; the
mask decoder and the encoder's base weights stay frozen. The teacher is a copy made after LoRA
injection, updated by EMA 0.95 of the trainable parameters. With s the student's predicted IoU
clamped to [0, 1] and averaged over the image's instances:

- L_ICM = 1 - s (through the frozen IoU head into LoRA, the prompt encoder and the curves);
- L_DPC = soft Dice (smooth 1) of the student's sigmoid against the teacher's hard mask at the
  low-res logits and at full size, each scaled by w / w_max, w = -log(1 - s) detached, w_max its
  running maximum over the stream;
- L_IFC = KL(teacher || student) of a per-channel spatial softmax (temperature s, detached: ours)
  over the image embedding, averaged over channels;
- L = L_ICM + L_DPC / 2 + L_IFC; Adam (lr 1e-4 as the official config merge runs it, weight decay
  1e-4), LambdaLR 0.999^step; SBCT's own Adam at lr 0.1, never reset.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stages.sam_tta.curves import BezierCurves, ControlPointCNN, FixedCurves
from stages.sam_tta.data import Case, Prompts
from stages.sam_tta.model import TinySam, full_size, inject_lora
from stages.sam_tta.training import prompt_tensors, soft_dice_loss

Curves = Literal["none", "learned", "fixed", "cnn"]
Kind = Literal["frozen", "sam_tta", "mean_teacher", "tent"]
CNN_LEARNING_RATE = 1e-3     # ours: the repo's control-point CNN variant states no rate; 0.1 diverges a CNN
MIN_TEMPERATURE = 0.05       # ours: keeps the IFC softmax finite when the predicted IoU is near 0
MAX_IOU_FOR_WEIGHT = 1 - 1e-6  # ours: w = -log(1 - s) is infinite at s = 1


@dataclass(frozen=True)
class Method:
    kind: Kind
    curves: Curves = "none"
    losses: frozenset[str] = frozenset({"icm", "dpc", "ifc"})
    train_model: bool = True           # False: only the curves adapt (SBCT only)
    train_prompt_encoder: bool = True
    model: Literal["source", "medsam"] = "source"


METHODS: dict[str, Method] = {
    "source_only": Method("frozen"),
    "sbct_only": Method("sam_tta", curves="learned", train_model=False),
    "sam_tta": Method("sam_tta", curves="learned"),
    "mean_teacher": Method("mean_teacher"),
    "tent": Method("tent", train_prompt_encoder=False),
    "medsam": Method("frozen", model="medsam"),
    "no_icm": Method("sam_tta", curves="learned", losses=frozenset({"dpc", "ifc"})),
    "no_dpc": Method("sam_tta", curves="learned", losses=frozenset({"icm", "ifc"})),
    "no_ifc": Method("sam_tta", curves="learned", losses=frozenset({"icm", "dpc"})),
    "frozen_prompt_encoder": Method("sam_tta", curves="learned", train_prompt_encoder=False),
    "fixed_random_curves": Method("sam_tta", curves="fixed"),
    "cnn_curves": Method("sam_tta", curves="cnn"),
}


@dataclass(frozen=True)
class Settings:
    lora_rank: int
    ema_momentum: float
    mean_teacher_momentum: float
    learning_rate: float
    weight_decay: float
    lr_decay: float
    sbct_learning_rate: float
    threshold: float


@dataclass
class StepRecord:
    case: str
    order: int
    predicted_iou: float
    loss: float
    seconds: float
    prediction: np.ndarray = field(repr=False)     # (H, W) bool at the case's original size
    curved_image: np.ndarray | None = field(default=None, repr=False)


def spatial_softmax_kl(teacher: torch.Tensor, student: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of each channel's softmax over space (``(1, C, h, w)`` maps), averaged over channels."""
    log_t = F.log_softmax(teacher.flatten(2) / temperature, dim=-1)
    log_s = F.log_softmax(student.flatten(2) / temperature, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the per-pixel Bernoulli of ``sigmoid(logits)`` (TENT on mask logits)."""
    p = torch.sigmoid(logits)
    return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).mean()


def dpc_weight(iou: torch.Tensor, running_max: float) -> tuple[float, float]:
    """w / w_max with w = -log(1 - s) (detached) and the updated running maximum."""
    w = float(-torch.log1p(-iou.detach().clamp(max=MAX_IOU_FOR_WEIGHT)))
    running_max = max(running_max, w)
    return (w / running_max if running_max > 0 else 0.0), running_max


def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            if s.requires_grad:
                t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def weak_augment(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The mean teacher's weak view (ours: contrast and brightness within 10%, noise sd 0.02)."""
    scale = 1 + (torch.rand(1, generator=generator) - 0.5) * 0.2
    shift = (torch.rand(1, generator=generator) - 0.5) * 0.2
    noise = torch.randn(image.shape, generator=generator) * 0.02
    return (image * scale + shift + noise.to(image.device)).clamp(0, 1)


class Adapter:
    """One method's state over one stream: student, teacher, curves and their optimisers."""

    def __init__(self, name: str, model: TinySam, settings: Settings, seed: int) -> None:
        self.name, self.method, self.settings = name, METHODS[name], settings
        self.student = copy.deepcopy(model)
        for parameter in self.student.parameters():
            parameter.requires_grad_(False)
        device = next(model.parameters()).device
        self.curves = self._curves(seed)
        if self.curves is not None:
            self.curves.to(device)
        self.running_max = 0.0
        self.generator = torch.Generator().manual_seed(seed)
        self.optimiser = self.scheduler = self.curve_optimiser = None
        self.teacher = None
        if self.method.kind == "frozen":
            return
        trainable = inject_lora(self.student, settings.lora_rank)
        if self.method.train_prompt_encoder:
            for parameter in self.student.prompt_encoder.parameters():
                parameter.requires_grad_(True)
            trainable += list(self.student.prompt_encoder.parameters())
        if not self.method.train_model:
            for parameter in trainable:
                parameter.requires_grad_(False)
            trainable = []
        self.student.to(device)
        self.teacher = copy.deepcopy(self.student)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        if trainable:
            self.optimiser = torch.optim.Adam(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, lambda step: settings.lr_decay ** step)
        if self.method.curves in ("learned", "cnn"):
            rate = settings.sbct_learning_rate if self.method.curves == "learned" else CNN_LEARNING_RATE
            self.curve_optimiser = torch.optim.Adam(self.curves.parameters(), lr=rate)

    def _curves(self, seed: int) -> nn.Module | None:
        if self.method.curves == "learned":
            return BezierCurves()
        if self.method.curves == "fixed":
            return FixedCurves(seed)
        if self.method.curves == "cnn":
            return ControlPointCNN()
        return None

    def transform(self, image: torch.Tensor) -> torch.Tensor:
        return image if self.curves is None else self.curves(image)

    def raw_points(self, image: torch.Tensor) -> np.ndarray | None:
        if isinstance(self.curves, ControlPointCNN):
            return self.curves.raw_points_for(image)[0].detach().cpu().numpy()
        return None if self.curves is None else self.curves.raw_points.detach().cpu().numpy().copy()

    def loss(self, image: torch.Tensor, prompts: dict) -> torch.Tensor:
        kind, size = self.method.kind, self.student.config.image_size
        if kind == "mean_teacher":
            out = self.student(image, **prompts)
            with torch.no_grad():
                target = (full_size(self.teacher(weak_augment(image, self.generator), **prompts).low_res, size) > 0).float()
            return soft_dice_loss(torch.sigmoid(full_size(out.low_res, size)), target)
        if kind == "tent":
            return binary_entropy(full_size(self.student(image, **prompts).low_res, size))
        curved = self.transform(image)
        out = self.student(curved, **prompts)
        with torch.no_grad():
            teacher = self.teacher(curved.detach(), **prompts)
        iou = out.iou.clamp(0, 1).mean()
        loss = torch.zeros((), device=image.device)
        if "icm" in self.method.losses:
            loss = loss + (1 - iou)
        if "dpc" in self.method.losses:
            scale, self.running_max = dpc_weight(iou, self.running_max)
            low = soft_dice_loss(torch.sigmoid(out.low_res), (teacher.low_res > 0).float())
            full = soft_dice_loss(torch.sigmoid(full_size(out.low_res, size)), (full_size(teacher.low_res, size) > 0).float())
            loss = loss + (low * scale + full * scale) / 2
        if "ifc" in self.method.losses:
            loss = loss + spatial_softmax_kl(teacher.embedding, out.embedding, iou.detach().clamp(min=MIN_TEMPERATURE))
        return loss

    def step(self, image: torch.Tensor, prompts: dict) -> float:
        """One adaptation step on one image (nothing for the frozen methods); returns the loss."""
        if self.method.kind == "frozen":
            return 0.0
        loss = self.loss(image, prompts)
        optimisers = [o for o in (self.optimiser, self.curve_optimiser) if o is not None]
        for optimiser in optimisers:
            optimiser.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.method.kind in ("sam_tta", "mean_teacher") and self.optimiser is not None:
            momentum = self.settings.ema_momentum if self.method.kind == "sam_tta" else self.settings.mean_teacher_momentum
            ema_update(self.teacher, self.student, momentum)
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, image: torch.Tensor, prompts: dict, original_shape: tuple[int, int]) -> tuple[np.ndarray, float, torch.Tensor]:
        """The updated student's mask (union of instances, at the original size), mean predicted IoU, curved image."""
        curved = self.transform(image)
        out = self.student(curved, **prompts)
        logits = F.interpolate(out.low_res, size=original_shape, mode="bilinear", align_corners=False)[:, 0]
        return (logits > self.settings.threshold).any(0).cpu().numpy(), float(out.iou.clamp(0, 1).mean()), curved


def stream_order(count: int, seed: int) -> list[int]:
    """The shuffled stream (torch.randperm under a generator seeded ``seed``, as a shuffling DataLoader draws it)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()


def adapt_stream(name: str, model: TinySam, cases: list[Case], prompts: list[Prompts], settings: Settings, seed: int,
                 device, keep_curved: int | None = None) -> tuple[list[StepRecord], list[np.ndarray]]:
    """Run one method over one stream; returns a record per image (stream order) and the curves after each image."""
    adapter = Adapter(name, model, settings, seed)
    records, curves = [], []
    for order, index in enumerate(stream_order(len(cases), seed)):
        case = cases[index]
        image = torch.as_tensor(case.image[None], device=device)
        tensors = prompt_tensors(prompts[index], device)
        started = time.perf_counter()
        adapter.student.train()
        loss = adapter.step(image, tensors)
        adapter.student.eval()
        mask, iou, curved = adapter.predict(image, tensors, case.original_labels.shape)
        seconds = time.perf_counter() - started
        records.append(StepRecord(case.case, order, iou, loss, seconds, mask,
                                  curved[0].cpu().numpy() if index == keep_curved else None))
        points = adapter.raw_points(image)
        if points is not None:
            curves.append(points)
    return records, curves
