"""Supervised training of the promptable model (source pretraining, and the MedSAM-like full fine-tuning).

Ours where the paper and repo say nothing (SAM's own recipe, shrunk): per instance, BCE + soft
Dice on the full-size logits, plus the MSE of the IoU head against the true IoU of the
thresholded mask, so the IoU head regresses the real mask quality that L_ICM and the DPC weights
rely on. Prompts alternate between jittered boxes and 5 + 5 points.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stages.sam_tta.data import Case, Prompts, case_prompts
from stages.sam_tta.model import TinySam, full_size
from stages.sam_tta.prompts import jitter_boxes


def prompt_tensors(prompts: Prompts, device) -> dict[str, torch.Tensor | None]:
    as_tensor = lambda a, dtype=torch.float32: None if a is None else torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return {"boxes": as_tensor(prompts.boxes), "points": as_tensor(prompts.points), "labels": as_tensor(prompts.labels, torch.long)}


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per item (first axis), averaged; smooth 1 as the repo's DiceLoss."""
    p, t = probabilities.flatten(1), target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` against the binary target, per item."""
    prediction = (logits > 0).flatten(1).float()
    t = target.flatten(1)
    intersection = (prediction * t).sum(1)
    union = prediction.sum(1) + t.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def supervised_loss(model: TinySam, case: Case, embedding: torch.Tensor, prompts: Prompts, device) -> torch.Tensor:
    low_res, iou = model.decode(embedding, **prompt_tensors(prompts, device))
    logits = full_size(low_res, model.config.image_size)[:, 0]
    target = torch.as_tensor(case.instances, dtype=torch.float32, device=device)
    mask_loss = F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(torch.sigmoid(logits), target)
    iou_loss = F.mse_loss(iou, mask_iou(logits.detach(), target))
    return mask_loss + iou_loss


def training_prompts(case: Case, rng: np.random.Generator, box_jitter: float) -> Prompts:
    if rng.random() < 0.5:
        prompts = case_prompts(case, "box", rng)
        return Prompts(jitter_boxes(prompts.boxes, rng, box_jitter, case.labels.shape[0]), None, None)
    return case_prompts(case, "point", rng)


def train_step(model: TinySam, optimiser: torch.optim.Optimizer, batch: Sequence[Case], rng: np.random.Generator,
               box_jitter: float, device) -> float:
    images = torch.as_tensor(np.stack([c.image for c in batch]), device=device)
    embeddings = model.image_encoder(images)
    loss = sum(supervised_loss(model, case, embeddings[i : i + 1], training_prompts(case, rng, box_jitter), device)
               for i, case in enumerate(batch)) / len(batch)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach())
