"""The three constraints on hand-computed probability maps."""
import pytest
import torch

from stages.ms_lesion.constraints import longitudinal_loss, spatial_loss, volumetric_loss


def maps():
    """Binary maps on 1 x 6 voxels that obey every longitudinal relation."""
    a1 = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    v = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    n = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    a2 = a1 - v + n
    return a1, a2, n, v


def test_consistent_maps_cost_nothing():
    a1, a2, n, v = maps()
    assert longitudinal_loss(a1, a2, n, v).item() == 0.0
    assert volumetric_loss(a1, a2, n, v).item() == 0.0


def test_longitudinal_loss_by_hand():
    a1, a2, n, v = maps()
    n_bad = n.clone()
    n_bad[0, 0] = 1.0  # "new" where a lesion already was at t1, and outside all-t2
    # voxel 0: containment relu(1 - 1) = 0 (a2[0] = 1), exclusion 1 * 1 = 1, balance (1 - (1 - 0 + 1))^2 = 1
    assert longitudinal_loss(a1, a2, n_bad, v).item() == pytest.approx(2 / 6)
    half = 0.5 * torch.ones_like(a1)
    # every voxel: containment 0, exclusion 0.25 + 0.25, balance (0.5 - 0.5)^2 = 0
    assert longitudinal_loss(half, half, half, half).item() == pytest.approx(0.5)


def test_spatial_loss_is_probability_outside_white_matter():
    probabilities = torch.tensor([[[0.5, 1.0, 0.0, 0.2]]])          # (B=1, C=1, 4 voxels)
    white_matter = torch.tensor([[1.0, 0.0, 0.0, 0.5]])
    assert spatial_loss(probabilities, white_matter).item() == pytest.approx((0 + 1.0 + 0 + 0.1) / 4)


def test_volumetric_loss_by_hand_and_differentiable():
    a1 = torch.tensor([[1.0, 1.0, 0.0]], requires_grad=True)
    a2 = torch.tensor([[1.0, 0.0, 0.0]])
    n, v = torch.zeros(1, 3), torch.zeros(1, 3)
    loss = volumetric_loss(a1, a2, n, v, eps=1.0)  # |1 - 2| / (2 + 1 + 1)
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert a1.grad is not None and torch.all(a1.grad != 0)
