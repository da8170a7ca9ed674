"""TIP's pre-training losses: ITC (CLIP), ITM with hard negatives, masked tabular reconstruction."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def clip_loss(image_embeddings: torch.Tensor, table_embeddings: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 CE(logits) + 0.5 CE(logits^T) on L2-normalised embeddings; also returns the logits."""
    image = F.normalize(image_embeddings, dim=1)
    table = F.normalize(table_embeddings, dim=1)
    logits = image @ table.T / temperature
    targets = torch.arange(len(logits), device=logits.device)
    return 0.5 * F.cross_entropy(logits, targets) + 0.5 * F.cross_entropy(logits.T, targets), logits


def hard_negatives(logits: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image a table, and for each table an image, drawn in proportion to softmax(similarity) + 1e-4,
    never the matching pair (the diagonal is zeroed)."""
    with torch.no_grad():
        weights_image_to_table = F.softmax(logits.float(), dim=1) + 1e-4
        weights_table_to_image = F.softmax(logits.float().T, dim=1) + 1e-4
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        weights_image_to_table = weights_image_to_table.masked_fill(eye, 0)
        weights_table_to_image = weights_table_to_image.masked_fill(eye, 0)
        table_for_image = torch.multinomial(weights_image_to_table.cpu(), 1, generator=generator).squeeze(1)
        image_for_table = torch.multinomial(weights_table_to_image.cpu(), 1, generator=generator).squeeze(1)
    return table_for_image.to(logits.device), image_for_table.to(logits.device)


def mtr_loss(categorical_logits: torch.Tensor, continuous_prediction: torch.Tensor, original: torch.Tensor,
             masked: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """CE over masked categorical cells (target = code + column offset), MSE over masked continuous cells,
    masked positions only; (L_cat + L_con) / 2 (a part with no masked cell counts 0)."""
    k = categorical_logits.shape[1]
    cat_mask, con_mask = masked[:, :k], masked[:, k:]
    zero = categorical_logits.sum() * 0
    loss_cat = zero
    if cat_mask.any():
        targets = original[:, :k].long() + offsets[None]
        loss_cat = F.cross_entropy(categorical_logits[cat_mask], targets[cat_mask])
    loss_con = zero
    if con_mask.any():
        loss_con = F.mse_loss(continuous_prediction[con_mask], original[:, k:].float()[con_mask])
    return (loss_cat + loss_con) / 2
