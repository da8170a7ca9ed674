"""Tests for the prompt-conditioned unrolled network (stages/cmr_recon/model.py).

References are independent of the module: numpy FFTs written out here, hand-computed data-consistency
values, and inner products for the adjoint check.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from stages.cmr_recon.losses import reconstruction_loss
from stages.cmr_recon.model import (
    PromptUnrolledNet,
    PromptUnrolledNetConfig,
    count_parameters,
    sens_expand,
    sens_reduce,
    soft_data_consistency,
    time_averaged_acs_kspace,
)

torch.set_num_threads(1)

TINY = dict(num_cascades=2, chans=4, pools=2, sens_chans=4, sens_pools=2, num_prompts=3, prompt_dim=4, prompt_size=4)


def np_fft2c(image: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def np_ifft2c(kspace: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def smooth_complex_image(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    axes_sigma = (0,) * (len(shape) - 2) + (sigma, sigma)
    real = gaussian_filter(rng.standard_normal(shape), axes_sigma)
    imag = gaussian_filter(rng.standard_normal(shape), axes_sigma)
    return real + 1j * imag


def coil_maps(num_coils: int, height: int, width: int) -> np.ndarray:
    """Smooth Gaussian-bump coil sensitivities with a phase ramp, (C, H, W)."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    maps = []
    for c in range(num_coils):
        angle = 2 * np.pi * c / num_coils
        cy, cx = 0.8 * np.sin(angle), 0.8 * np.cos(angle)
        maps.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5) * np.exp(1j * (angle + 0.5 * xx)))
    return np.stack(maps)


def synthetic_example(
    height: int, width: int, frames: int, coils: int, batch: int = 1, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Multi-coil, multi-frame example with a ktUniform-like mask (R = 2, shifted per frame) plus 4 ACS columns."""
    rng = np.random.default_rng(seed)
    images = smooth_complex_image(rng, (batch, frames, height, width), sigma=2.0)
    images = images + 2.0 * np.abs(gaussian_filter(rng.standard_normal((batch, 1, height, width)), (0, 0, 3, 3)))
    full_kspace = np_fft2c(images[:, :, None] * coil_maps(coils, height, width)[None, None])
    mask = np.zeros((batch, frames, 1, height, width), dtype=bool)
    for t in range(frames):
        mask[:, t, :, :, (t % 2) :: 2] = True
    acs = np.zeros((batch, 1, 1, height, width), dtype=bool)
    acs[..., width // 2 - 2 : width // 2 + 2] = True
    mask |= acs
    target = np.sqrt((np.abs(np_ifft2c(full_kspace[:, frames // 2])) ** 2).sum(axis=1))
    return {
        "masked_kspace": torch.from_numpy((full_kspace * mask).astype(np.complex64)),
        "mask": torch.from_numpy(mask),
        "acs_mask": torch.from_numpy(acs),
        "condition": torch.tensor([[1, 0, 2]] * batch),
        "target": torch.from_numpy(target.astype(np.float32)),
    }


def network_inputs(example: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return example["masked_kspace"], example["mask"], example["acs_mask"], example["condition"]


@pytest.mark.parametrize("adjacent_frames", [0, 1])
@pytest.mark.parametrize(("height", "width"), [(24, 20), (23, 17)])
def test_output_shapes_for_any_matrix_size_and_frame_count(adjacent_frames: int, height: int, width: int) -> None:
    torch.manual_seed(0)
    frames = 2 * adjacent_frames + 1
    model = PromptUnrolledNet(adjacent_frames=adjacent_frames, **TINY)
    example = synthetic_example(height, width, frames, coils=3, batch=2)
    image = model(*network_inputs(example))
    kspace = model.forward_kspace(*network_inputs(example))
    assert image.shape == (2, height, width)
    assert image.dtype == torch.float32
    assert torch.isfinite(image).all()
    assert kspace.shape == (2, frames, 3, height, width)
    assert kspace.dtype == torch.complex64


def test_mask_layouts_are_equivalent() -> None:
    """(B, H, W) ACS masks equal (B, 1, 1, H, W) ones; float 0/1 sampling masks equal bool ones."""
    torch.manual_seed(0)
    model = PromptUnrolledNet(**TINY).eval()
    example = synthetic_example(16, 12, 3, coils=2)
    kspace, mask, acs, condition = network_inputs(example)
    with torch.no_grad():
        reference = model(kspace, mask, acs, condition)
        assert torch.equal(reference, model(kspace, mask, acs[:, 0, 0], condition))
        assert torch.equal(reference, model(kspace, mask.float(), acs, condition))


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    example = synthetic_example(16, 12, 3, coils=2)
    grads = []
    for use_checkpoint in (False, True):
        torch.manual_seed(0)
        model = PromptUnrolledNet(**TINY, use_checkpoint=use_checkpoint).train()
        reconstruction_loss(model(*network_inputs(example)), example["target"]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_zero_cascades_returns_zero_filled_rss_of_centre_frame() -> None:
    example = synthetic_example(20, 14, 3, coils=3, batch=2)
    model = PromptUnrolledNet(**{**TINY, "num_cascades": 0})
    with torch.no_grad():
        image = model(*network_inputs(example)).numpy()
    expected = np.sqrt((np.abs(np_ifft2c(example["masked_kspace"].numpy()[:, 1])) ** 2).sum(axis=1))
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-6)


def test_soft_data_consistency_hand_values() -> None:
    kspace = torch.tensor([3 + 1j, 5 - 2j], dtype=torch.complex64)
    measured = torch.tensor([1 - 1j, 0 + 0j], dtype=torch.complex64)
    mask = torch.tensor([True, False])
    # sampled: (3+1j) - 0.5 * ((3+1j) - (1-1j)) = 2+0j; unsampled: unchanged
    out = soft_data_consistency(kspace, measured, mask, torch.tensor([0.5]))
    assert torch.equal(out, torch.tensor([2 + 0j, 5 - 2j], dtype=torch.complex64))


def _silence_regulariser(cascade: torch.nn.Module, image: torch.Tensor | None = None) -> None:
    """Make the cascade's regulariser return zeros (or a fixed image) instead of running the U-Net."""

    def fixed_output(x: torch.Tensor, condition_embedding: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) if image is None else image

    cascade.regulariser.forward = fixed_output


def test_cascade_with_zero_regulariser_and_unit_weight_restores_measured_entries_exactly() -> None:
    torch.manual_seed(0)
    model = PromptUnrolledNet(**TINY)
    example = synthetic_example(16, 12, 3, coils=2)
    measured, mask, acs, _ = network_inputs(example)
    sens = model.sensitivity_maps(measured, mask, acs)
    current = torch.randn_like(measured) * 10  # a k-space estimate that disagrees with the data everywhere
    cascade = model.cascades[0]
    _silence_regulariser(cascade)
    with torch.no_grad():
        cascade.dc_weight.fill_(1.0)
        out = cascade(current, measured, mask, sens, torch.zeros(1, 16))
    sampled = mask.expand_as(current)
    assert torch.equal(out[sampled], measured[sampled])
    assert torch.equal(out[~sampled], current[~sampled])


def test_cascade_subtracts_fft_of_sensitivity_weighted_regulariser_output() -> None:
    torch.manual_seed(0)
    model = PromptUnrolledNet(**TINY)
    example = synthetic_example(16, 12, 3, coils=2)
    measured, mask, acs, _ = network_inputs(example)
    sens = model.sensitivity_maps(measured, mask, acs)
    current = torch.randn_like(measured)
    refinement = torch.randn(1, 3, 16, 12, dtype=torch.complex64)
    cascade = model.cascades[1]
    _silence_regulariser(cascade, refinement)
    with torch.no_grad():
        cascade.dc_weight.fill_(0.25)
        out = cascade(current, measured, mask, sens, torch.zeros(1, 16)).numpy()
    k, k0, m = current.numpy(), measured.numpy(), mask.numpy()
    expected = k - 0.25 * m * (k - k0) - np_fft2c(refinement.numpy()[:, :, None] * sens.detach().numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_sens_reduce_is_adjoint_of_sens_expand() -> None:
    rng = np.random.default_rng(3)
    image = torch.from_numpy(smooth_complex_image(rng, (2, 3, 10, 9), 0.5).astype(np.complex128))
    kspace = torch.from_numpy(smooth_complex_image(rng, (2, 3, 4, 10, 9), 0.5).astype(np.complex128))
    sens = torch.from_numpy(smooth_complex_image(rng, (2, 1, 4, 10, 9), 1.0).astype(np.complex128))
    lhs = torch.vdot(sens_expand(image, sens).flatten(), kspace.flatten())
    rhs = torch.vdot(image.flatten(), sens_reduce(kspace, sens).flatten())
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


def test_time_averaged_acs_counts_only_frames_where_the_entry_was_sampled() -> None:
    kspace = torch.zeros(1, 3, 1, 2, 2, dtype=torch.complex64)
    kspace[0, :, 0, 0, 0] = torch.tensor([1.0, 2.0, 6.0])  # sampled in frames 0 and 2 only
    kspace[0, :, 0, 1, 1] = torch.tensor([4.0, 4.0, 7.0])  # sampled in all frames, but outside the ACS
    mask = torch.ones(1, 3, 1, 2, 2, dtype=torch.bool)
    mask[0, 1, 0, 0, 0] = False
    acs = torch.tensor([[True, True], [True, False]])[None, None, None]
    averaged = time_averaged_acs_kspace(kspace * mask, mask, acs)
    expected = torch.tensor([[[[(1.0 + 6.0) / 2, 0.0], [0.0, 0.0]]]], dtype=torch.complex64)
    assert torch.equal(averaged, expected)


def test_sensitivity_maps_are_rss_normalised_and_use_only_the_acs_region() -> None:
    torch.manual_seed(0)
    model = PromptUnrolledNet(**TINY)
    example = synthetic_example(20, 15, 3, coils=4, batch=2)
    kspace, mask, acs, _ = network_inputs(example)
    with torch.no_grad():
        sens = model.sensitivity_maps(kspace, mask, acs)
        assert sens.shape == (2, 1, 4, 20, 15)
        np.testing.assert_allclose((sens.abs() ** 2).sum(dim=2).numpy(), 1.0, atol=1e-5)
        outside_acs = mask & ~acs
        perturbed = kspace + 5.0 * torch.randn_like(kspace) * outside_acs
        assert torch.allclose(model.sensitivity_maps(perturbed, mask, acs), sens, atol=1e-6)
        inside = kspace + 5.0 * torch.randn_like(kspace) * acs
        assert not torch.allclose(model.sensitivity_maps(inside, mask, acs), sens, atol=1e-3)


def test_condition_changes_output_and_gradients_reach_prompts_embeddings_and_dc_weights() -> None:
    torch.manual_seed(0)
    model = PromptUnrolledNet(**{**TINY, "num_cascades": 3})
    example = synthetic_example(16, 12, 3, coils=2, batch=2)
    kspace, mask, acs, condition = network_inputs(example)
    other_modality = condition.clone()
    other_modality[:, 0] = 7
    with torch.no_grad():
        base = model(kspace, mask, acs, condition)
        changed = model(kspace, mask, acs, other_modality)
    assert (base - changed).abs().max() > 1e-4 * base.abs().max()

    reconstruction_loss(model(kspace, mask, acs, condition), example["target"]).backward()
    prompt_banks = [p for name, p in model.named_parameters() if name.endswith("prompt_bank")]
    assert len(prompt_banks) == 3 * TINY["pools"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prompt_banks)
    embedding = model.condition_embedding
    for table, used in [(embedding.modality, 1), (embedding.pattern, 0), (embedding.acceleration, 2)]:
        assert table.weight.grad[used].abs().sum() > 0
        unused_rows = [row for row in range(table.num_embeddings) if row != used]
        assert table.weight.grad[unused_rows].abs().sum() == 0
    # The first cascade starts from the measured k-space, so its DC term (k - k0 on sampled entries) is zero
    # and its weight gets no gradient, as in E2E-VarNet; the later cascades' weights must get one.
    dc_grads = [cascade.dc_weight.grad for cascade in model.cascades]
    assert dc_grads[0].abs().item() == 0.0
    assert all(grad.abs().item() > 0 for grad in dc_grads[1:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda k, m, a, c: (k[:, :1], m[:, :1], a, c), "frames"),
        (lambda k, m, a, c: (k.abs(), m, a, c), "complex"),
        (lambda k, m, a, c: (k.to(torch.complex128), m, a, c), "complex64"),
        (lambda k, m, a, c: (k, m[..., :-1], a, c), "mask"),
        (lambda k, m, a, c: (k, m, a[..., :-1], c), "acs_mask"),
        (lambda k, m, a, c: (k, m, a, c[:, :2]), "condition"),
        (lambda k, m, a, c: (k, m, a, c + torch.tensor([[10, 0, 0]])), "modality"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, message: str) -> None:
    model = PromptUnrolledNet(**TINY)
    example = synthetic_example(12, 12, 3, coils=2)
    with pytest.raises(ValueError, match=message):
        model(*change(*network_inputs(example)))


def test_config_builds_the_same_architecture() -> None:
    config = PromptUnrolledNetConfig(num_cascades=2, chans=4)
    direct = PromptUnrolledNet(num_cascades=2, chans=4, pools=2, sens_chans=4, sens_pools=2)
    assert count_parameters(config.build()) == count_parameters(direct)
    with pytest.raises(ValueError, match="chans"):
        PromptUnrolledNet(chans=0)


def test_tiny_network_overfits_one_example_below_the_zero_filled_loss() -> None:
    torch.manual_seed(0)
    example = synthetic_example(24, 20, 1, coils=2)
    inputs = network_inputs(example)
    target = example["target"]
    zero_filled = PromptUnrolledNet(**{**TINY, "adjacent_frames": 0, "num_cascades": 0})
    with torch.no_grad():
        baseline = reconstruction_loss(zero_filled(*inputs), target).item()
    model = PromptUnrolledNet(**{**TINY, "adjacent_frames": 0})
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimiser.zero_grad()
        loss = reconstruction_loss(model(*inputs), target)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = reconstruction_loss(model(*inputs), target).item()
    assert final < 0.25 * baseline, (final, baseline)
