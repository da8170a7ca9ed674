"""Encoders, masks and losses: MERL's CLIP loss by hand, masking semantics, and that pre-training learns."""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from stages.ecg_text.masking import dynamic_lead_masks, leads_mask, random_k_masks, segment_masks
from stages.ecg_text.models import VARIANTS, EcgTextModel, EncoderParams, clip_loss, pretraining_loss

PARAMS = EncoderParams(patch_size=50, width=16, depth=1, heads=2, mlp_width=16, projection_dim=8, text_hidden=8, dropout=0.1)


def test_clip_loss_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    xn, yn = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    logits = xn @ yn.T / 0.07
    expected = (np.mean(logsumexp(logits, axis=1) - np.diag(logits)) + np.mean(logsumexp(logits, axis=0) - np.diag(logits)))
    assert float(clip_loss(torch.tensor(x), torch.tensor(y), 0.07)) == pytest.approx(expected, rel=1e-6)


def test_lead_aware_encoder_ignores_absent_leads_and_merl_zero_fills_them():
    torch.manual_seed(0)
    signal = torch.rand(2, 12, 200)
    present = torch.from_numpy(np.repeat(leads_mask(["I", "II", "V1"])[None], 2, axis=0))
    changed = signal.clone()
    changed[:, ~present[0]] = torch.rand_like(changed[:, ~present[0]])
    kmerl = EcgTextModel(VARIANTS["kmerl"], PARAMS, 200, 384, 8).eval()
    with torch.no_grad():
        torch.testing.assert_close(kmerl.features(signal, present), kmerl.features(changed, present))
        assert not torch.allclose(kmerl.features(signal, present), kmerl.features(signal))
    merl = EcgTextModel(VARIANTS["merl"], PARAMS, 200, 384, 8).eval()
    zero_filled = signal * present[:, :, None]
    with torch.no_grad():
        torch.testing.assert_close(merl.features(changed, present), merl.features(zero_filled))


def test_segment_masks_hide_one_contiguous_run_per_present_lead():
    generator = torch.Generator().manual_seed(1)
    present = torch.ones(4, 12, dtype=torch.bool)
    present[0, 3:] = False
    visible = segment_masks(present, 10, 0.3, generator)
    assert not visible[0, 3:].any()
    hidden = ~visible[present]
    assert (hidden.sum(dim=1) == 3).all()
    for row in hidden:
        where = torch.nonzero(row).flatten()
        assert (where.diff() == 1).all()


def test_lead_subset_masks():
    generator = torch.Generator().manual_seed(2)
    masks = dynamic_lead_masks(400, 0.3, 0.2, generator)
    assert (masks.sum(dim=1) >= 1).all()
    assert 0.22 < float((masks.sum(dim=1) == 12).float().mean()) < 0.42   # 0.3 plus random k = 12
    fixed = random_k_masks(50, 3, seed=7)
    assert (fixed.sum(axis=1) == 3).all() and (fixed == random_k_masks(50, 3, seed=7)).all()
    with pytest.raises(ValueError, match="V7"):
        leads_mask(["V7"])


@pytest.mark.parametrize("name", ["merl", "kmerl"])
def test_pretraining_fits_a_small_paired_batch(name):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    signal, text = torch.rand(8, 12, 200), torch.randn(8, 384)
    entities = (torch.rand(8, 8) > 0.5).float()
    model = EcgTextModel(VARIANTS[name], PARAMS, 200, 384, 8)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        visible = None
        if name == "kmerl":
            visible = segment_masks(torch.ones(8, 12, dtype=torch.bool), 4, 0.25, generator)
        parts = pretraining_loss(model, signal, text, entities, visible, 0.07, 1.0)
        optimiser.zero_grad()
        parts["loss"].backward()
        optimiser.step()
        losses.append(float(parts["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    if name == "kmerl":
        assert "entity" in parts
