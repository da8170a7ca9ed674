"""The network's inputs and outputs, the masked supervised loss and the constraint ramp."""
import numpy as np
import pytest
import torch

from stages.ms_lesion.model import NetworkConfig, network_inputs, supervised_loss
from stages.ms_lesion.train import constraint_ramp


def test_inputs_are_both_scans_their_difference_and_white_matter():
    scans = np.random.default_rng(0).random((2, 4, 4, 4)).astype(np.float32)
    wm = np.full((4, 4, 4), 0.3, np.float32)
    inputs = network_inputs(scans, wm)
    assert inputs.shape == (4, 4, 4, 4)
    np.testing.assert_allclose(inputs[2], scans[1] - scans[0])
    np.testing.assert_allclose(inputs[3], wm)


@pytest.mark.parametrize("architecture,size", [("unet", 16), ("vnet", 16)])
def test_four_outputs_at_input_size(architecture, size):
    model = NetworkConfig(architecture, (4, 8), (2,)).build().eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 4, size, size, size))
    assert out.shape == (1, 4, size, size, size)


def test_unknown_labels_add_nothing_to_the_supervised_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6, 6)
    labels = (torch.rand(2, 4, 6, 6, 6) > 0.7).float()
    known = torch.tensor([[True, True, False, False], [False, False, True, False]])
    changed = labels.clone()
    changed[0, 2:] = 1 - changed[0, 2:]
    changed[1, :2] = 1 - changed[1, :2]
    changed[1, 3] = 1 - changed[1, 3]
    assert supervised_loss(logits, labels, known).item() == pytest.approx(supervised_loss(logits, changed, known).item())
    assert supervised_loss(logits, labels, known).item() != pytest.approx(supervised_loss(logits, 1 - labels, known).item())


def test_supervised_loss_is_bce_where_the_patch_has_no_lesion():
    logits = torch.full((1, 4, 2, 2, 2), -1.0)
    labels = torch.zeros(1, 4, 2, 2, 2)
    known = torch.tensor([[True, False, False, False]])
    expected = torch.nn.functional.softplus(torch.tensor(-1.0)).item()  # BCE of logit -1 against 0
    assert supervised_loss(logits, labels, known).item() == pytest.approx(expected)


def test_constraint_ramp_by_hand():
    assert [constraint_ramp(i, 100, 0.5, 0.2) for i in (0, 49, 50, 59, 69, 99)] == [0.0, 0.0, 0.05, 0.5, 1.0, 1.0]
    assert constraint_ramp(50, 100, 0.5, 0.0) == 1.0
