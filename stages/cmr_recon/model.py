"""Prompt-conditioned unrolled reconstruction network for multi-coil, multi-frame cardiac k-space.

The design follows E2E-VarNet (Sriram et al. 2020; facebookresearch/fastMRI ``fastmri/models/varnet.py``)
with the prompt conditioning of PromptMR / PromptMR+ (hellopipu/PromptMR, hellopipu/PromptMR-plus):

- coil sensitivities are estimated once from the time-averaged autocalibration (ACS) k-space only
  (low-pass), refined per coil by a small normalised U-Net and normalised so that ``sum_c |S_c|^2 = 1``;
- each cascade applies soft data consistency with a learnable weight and an image-space regulariser:
  ``k_next = k - w * mask * (k - k0) - fft2c(S * R(sum_c conj(S) * ifft2c(k)))``;
- the regulariser is a normalised U-Net over the F = 2 * adjacent_frames + 1 coil-combined frames
  (2F real channels) whose decoder levels are fed a prompt: a learnable bank of prompts mixed by
  softmax weights computed from globally pooled features plus an embedding of
  (modality, sampling pattern, acceleration bucket).

Tensor conventions (complex64 unless stated):
    masked_kspace (B, F, C, H, W); mask (B, F, 1, H, W) bool or float; acs_mask (B, 1, 1, H, W) or (B, H, W) bool;
    condition (B, 3) long; sensitivity maps (B, 1, C, H, W); coil-combined images (B, F, H, W).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from stages.cmr_recon.transforms import AXES

_NORM_EPS = 1e-12


# --------------------------------------------------------------------------------------------------------------------
# Pure tensor helpers
# --------------------------------------------------------------------------------------------------------------------


def fft2c_torch(image: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image, dim=AXES), norm="ortho"), dim=AXES)


def ifft2c_torch(kspace: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=AXES), norm="ortho"), dim=AXES)


def rss_torch(coil_images: torch.Tensor, coil_dim: int) -> torch.Tensor:
    return torch.sqrt(torch.sum(coil_images.abs() ** 2, dim=coil_dim))


def complex_to_channels(image: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) complex -> (B, 2N, H, W) real: the N real parts, then the N imaginary parts."""
    return torch.cat([image.real, image.imag], dim=1)


def channels_to_complex(channels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`complex_to_channels`: (B, 2N, H, W) real -> (B, N, H, W) complex."""
    real, imag = torch.chunk(channels, 2, dim=1)
    return torch.complex(real.contiguous(), imag.contiguous())


def sens_expand(image: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Coil-combined images (B, F, H, W) -> multi-coil k-space (B, F, C, H, W): ``fft2c(S * x)``."""
    return fft2c_torch(image.unsqueeze(2) * sens_maps)


def sens_reduce(kspace: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Multi-coil k-space (B, F, C, H, W) -> coil-combined images (B, F, H, W): ``sum_c conj(S_c) ifft2c(k_c)``.

    This is the adjoint of :func:`sens_expand`.
    """
    return (ifft2c_torch(kspace) * sens_maps.conj()).sum(dim=2)


def soft_data_consistency(
    kspace: torch.Tensor, measured_kspace: torch.Tensor, mask: torch.Tensor, dc_weight: torch.Tensor
) -> torch.Tensor:
    """``k - w * mask * (k - k0)``, written as ``(1 - w m) k + w m k0``.

    The two forms are equal algebraically; the second one returns the measured entries bit-exactly when
    ``w * m == 1`` and leaves the unsampled entries bit-exactly unchanged, which the first does not in
    floating point.
    """
    weighted_mask = dc_weight * mask.to(kspace.real.dtype)
    return (1.0 - weighted_mask) * kspace + weighted_mask * measured_kspace


def time_averaged_acs_kspace(masked_kspace: torch.Tensor, mask: torch.Tensor, acs_mask: torch.Tensor) -> torch.Tensor:
    """Average the ACS region of the k-space over the F frames -> (B, C, H, W); zero outside the ACS.

    Each ACS entry is averaged over the frames in which it was sampled, so a frame whose mask misses
    part of the ACS region does not pull the average towards zero.
    """
    acs_sampled = mask.to(torch.bool) & acs_mask.to(torch.bool)  # (B, F, 1, H, W)
    weights = acs_sampled.to(masked_kspace.real.dtype)
    frame_count = weights.sum(dim=1).clamp_min(1.0)  # (B, 1, H, W)
    return (masked_kspace * weights).sum(dim=1) / frame_count


def divide_root_sum_of_squares(coil_images: torch.Tensor, coil_dim: int) -> torch.Tensor:
    """Normalise coil images so that ``sum_c |S_c|^2 = 1`` wherever any coil is non-zero."""
    return coil_images / rss_torch(coil_images, coil_dim=coil_dim).unsqueeze(coil_dim).clamp_min(_NORM_EPS)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes of (N, C, H, W) up to a multiple of ``multiple``, split evenly (as NormUnet)."""
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)  # (left, right, top, bottom)
    return F.pad(x, pads), pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    left, right, top, bottom = pads
    height, width = x.shape[-2:]
    return x[..., top : height - bottom, left : width - right]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------------------


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, instance norm, LeakyReLU 0.2) layers, as in fastMRI's U-Net."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )


class TransposeConvBlock(nn.Sequential):
    """2x up-sampling by a stride-2 transposed convolution, instance norm, LeakyReLU 0.2."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )


class ConditionEmbedding(nn.Module):
    """Sum of learned embeddings of the (modality, pattern, acceleration bucket) indices -> (B, dim)."""

    def __init__(self, num_modalities: int, num_patterns: int, num_accelerations: int, dim: int) -> None:
        super().__init__()
        self.sizes = (num_modalities, num_patterns, num_accelerations)
        self.modality = nn.Embedding(num_modalities, dim)
        self.pattern = nn.Embedding(num_patterns, dim)
        self.acceleration = nn.Embedding(num_accelerations, dim)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.modality(condition[:, 0]) + self.pattern(condition[:, 1]) + self.acceleration(condition[:, 2])


class PromptBlock(nn.Module):
    """PromptMR-style prompt: a learnable bank mixed by softmax weights from pooled features and the condition.

    ``weights = softmax(Linear(mean_hw(features) + Linear(e)))``; the mixed prompt is resized to the
    requested spatial size, passed through a 3x3 convolution and shifted by a per-channel bias computed from
    the condition embedding ``e``.
    """

    def __init__(
        self, feature_chans: int, prompt_dim: int, num_prompts: int, prompt_size: int, condition_dim: int
    ) -> None:
        super().__init__()
        self.prompt_bank = nn.Parameter(torch.rand(num_prompts, prompt_dim, prompt_size, prompt_size))
        self.condition_to_features = nn.Linear(condition_dim, feature_chans)
        self.features_to_logits = nn.Linear(feature_chans, num_prompts)
        self.condition_to_prompt = nn.Linear(condition_dim, prompt_dim)
        self.prompt_conv = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def mixing_weights(self, features: torch.Tensor, condition_embedding: torch.Tensor) -> torch.Tensor:
        """Softmax prompt weights (B, num_prompts)."""
        pooled = features.mean(dim=(-2, -1)) + self.condition_to_features(condition_embedding)
        return torch.softmax(self.features_to_logits(pooled), dim=1)

    def forward(
        self, features: torch.Tensor, condition_embedding: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        weights = self.mixing_weights(features, condition_embedding)
        prompt = torch.einsum("bp,pchw->bchw", weights, self.prompt_bank)
        prompt = F.interpolate(prompt, size=size, mode="bilinear", align_corners=False)
        return self.prompt_conv(prompt) + self.condition_to_prompt(condition_embedding)[:, :, None, None]


class PromptUnet(nn.Module):
    """fastMRI-style U-Net; with ``num_prompts > 0`` each decoder level also receives a :class:`PromptBlock` output.

    Input spatial sizes must be multiples of ``2 ** num_pools`` (see :class:`NormPromptUnet`).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        chans: int,
        num_pools: int,
        num_prompts: int = 0,
        prompt_dim: int = 0,
        prompt_size: int = 8,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        if num_pools < 1:
            raise ValueError(f"num_pools must be >= 1, got {num_pools}")
        self.use_prompts = num_prompts > 0
        self.down_blocks = nn.ModuleList([ConvBlock(in_chans, chans)])
        ch = chans
        for _ in range(num_pools - 1):
            self.down_blocks.append(ConvBlock(ch, ch * 2))
            ch *= 2
        self.bottleneck = ConvBlock(ch, ch * 2)
        ch *= 2
        self.prompt_blocks = nn.ModuleList()
        self.up_transposes = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for _ in range(num_pools):
            if self.use_prompts:
                self.prompt_blocks.append(PromptBlock(ch, prompt_dim, num_prompts, prompt_size, condition_dim))
            self.up_transposes.append(TransposeConvBlock(ch, ch // 2))
            extra = prompt_dim if self.use_prompts else 0
            self.up_blocks.append(ConvBlock(ch + extra, ch // 2))
            ch //= 2
        self.out_conv = nn.Conv2d(ch, out_chans, kernel_size=1)

    def forward(self, x: torch.Tensor, condition_embedding: torch.Tensor | None = None) -> torch.Tensor:
        if self.use_prompts and condition_embedding is None:
            raise ValueError("PromptUnet with prompts needs a condition embedding")
        skips = []
        out = x
        for block in self.down_blocks:
            out = block(out)
            skips.append(out)
            out = F.avg_pool2d(out, kernel_size=2)
        out = self.bottleneck(out)
        for level, (transpose, block) in enumerate(zip(self.up_transposes, self.up_blocks)):
            skip = skips.pop()
            parts = [transpose(out), skip]
            if self.use_prompts:
                parts.append(self.prompt_blocks[level](out, condition_embedding, skip.shape[-2:]))
            out = block(torch.cat(parts, dim=1))
        return self.out_conv(out)


class NormPromptUnet(nn.Module):
    """Complex images in and out: normalise, pad to a multiple of ``2**num_pools``, U-Net, crop, unnormalise.

    Normalisation is per sample, one mean and standard deviation for all real channels and one for all
    imaginary channels (fastMRI's NormUnet grouping).
    """

    def __init__(
        self,
        num_images: int,
        chans: int,
        num_pools: int,
        num_prompts: int = 0,
        prompt_dim: int = 0,
        prompt_size: int = 8,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.pad_multiple = 2**num_pools
        self.unet = PromptUnet(
            2 * num_images, 2 * num_images, chans, num_pools, num_prompts, prompt_dim, prompt_size, condition_dim
        )

    def forward(self, image: torch.Tensor, condition_embedding: torch.Tensor | None = None) -> torch.Tensor:
        x = complex_to_channels(image)
        batch, channels, height, width = x.shape
        grouped = x.reshape(batch, 2, -1)
        mean = grouped.mean(dim=2).repeat_interleave(channels // 2, dim=1)[:, :, None, None]
        std = grouped.std(dim=2).clamp_min(_NORM_EPS).repeat_interleave(channels // 2, dim=1)[:, :, None, None]
        x, pads = pad_to_multiple((x - mean) / std, self.pad_multiple)
        x = crop_padding(self.unet(x, condition_embedding), pads)
        return channels_to_complex(x * std + mean)


class SensitivityModel(nn.Module):
    """Coil sensitivities from the time-averaged ACS k-space: low-pass images, per-coil U-Net, RSS normalisation."""

    def __init__(self, chans: int, num_pools: int) -> None:
        super().__init__()
        self.norm_unet = NormPromptUnet(num_images=1, chans=chans, num_pools=num_pools)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, acs_mask: torch.Tensor) -> torch.Tensor:
        """-> (B, 1, C, H, W) maps with ``sum_c |S_c|^2 = 1`` wherever any coil is non-zero."""
        low_pass_images = ifft2c_torch(time_averaged_acs_kspace(masked_kspace, mask, acs_mask))  # (B, C, H, W)
        batch, coils, height, width = low_pass_images.shape
        refined = self.norm_unet(low_pass_images.reshape(batch * coils, 1, height, width))
        maps = divide_root_sum_of_squares(refined.reshape(batch, coils, height, width), coil_dim=1)
        return maps.unsqueeze(1)


class UnrolledCascade(nn.Module):
    """One cascade: ``k - w * mask * (k - k0) - sens_expand(R(sens_reduce(k), e))`` with a learnable ``w``."""

    def __init__(self, regulariser: NormPromptUnet) -> None:
        super().__init__()
        self.regulariser = regulariser
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(
        self,
        kspace: torch.Tensor,
        measured_kspace: torch.Tensor,
        mask: torch.Tensor,
        sens_maps: torch.Tensor,
        condition_embedding: torch.Tensor,
    ) -> torch.Tensor:
        refinement = self.regulariser(sens_reduce(kspace, sens_maps), condition_embedding)
        consistent = soft_data_consistency(kspace, measured_kspace, mask, self.dc_weight)
        return consistent - sens_expand(refinement, sens_maps)


# --------------------------------------------------------------------------------------------------------------------
# Full network
# --------------------------------------------------------------------------------------------------------------------


class PromptUnrolledNet(nn.Module):
    """Prompt-conditioned E2E-VarNet over F = 2 * adjacent_frames + 1 consecutive frames.

    ``forward`` returns the RSS magnitude (B, H, W) of the centre frame after the cascades;
    ``forward_kspace`` returns the final multi-coil k-space (B, F, C, H, W). Any H and W work: every U-Net
    pads internally to a multiple of ``2 ** pools`` and crops back. With ``num_cascades = 0`` the output is
    the zero-filled RSS image.
    """

    def __init__(
        self,
        num_cascades: int = 4,
        chans: int = 8,
        pools: int = 2,
        sens_chans: int = 4,
        sens_pools: int = 2,
        adjacent_frames: int = 1,
        num_prompts: int = 4,
        prompt_dim: int = 8,
        num_modalities: int = 10,
        num_patterns: int = 4,
        num_accelerations: int = 8,
        prompt_size: int = 8,
        condition_dim: int = 16,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        for name, value, minimum in [
            ("num_cascades", num_cascades, 0), ("chans", chans, 1), ("pools", pools, 1),
            ("sens_chans", sens_chans, 1), ("sens_pools", sens_pools, 1), ("adjacent_frames", adjacent_frames, 0),
            ("num_prompts", num_prompts, 1), ("prompt_dim", prompt_dim, 1), ("num_modalities", num_modalities, 1),
            ("num_patterns", num_patterns, 1), ("num_accelerations", num_accelerations, 1),
            ("prompt_size", prompt_size, 1), ("condition_dim", condition_dim, 1),
        ]:  # fmt: skip
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"PromptUnrolledNet: {name} must be an int >= {minimum}, got {value!r}")
        self.num_frames = 2 * adjacent_frames + 1
        self.use_checkpoint = use_checkpoint
        self.condition_embedding = ConditionEmbedding(num_modalities, num_patterns, num_accelerations, condition_dim)
        self.sens_net = SensitivityModel(sens_chans, sens_pools)
        self.cascades = nn.ModuleList(
            [
                UnrolledCascade(
                    NormPromptUnet(self.num_frames, chans, pools, num_prompts, prompt_dim, prompt_size, condition_dim)
                )
                for _ in range(num_cascades)
            ]
        )

    def _validate(
        self, masked_kspace: torch.Tensor, mask: torch.Tensor, acs_mask: torch.Tensor, condition: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check shapes and dtypes; return (mask as (B|1, F|1, 1, H, W), acs_mask as (B|1, 1, 1, H, W))."""
        if not torch.is_complex(masked_kspace) or masked_kspace.ndim != 5:
            raise ValueError(
                f"masked_kspace must be a complex (B, F, C, H, W) tensor, got {masked_kspace.dtype} "
                f"{tuple(masked_kspace.shape)}"
            )
        batch, frames, _, height, width = masked_kspace.shape
        parameter_dtype = next(self.parameters()).dtype
        if masked_kspace.real.dtype != parameter_dtype:
            raise ValueError(
                f"masked_kspace is {masked_kspace.dtype} but the network's parameters are {parameter_dtype} "
                f"(use complex64 with float32 parameters)"
            )
        if frames != self.num_frames:
            raise ValueError(
                f"masked_kspace has {frames} frames but the network was built for {self.num_frames} "
                f"(2 * adjacent_frames + 1)"
            )
        if (
            mask.ndim != 5
            or mask.shape[0] not in (1, batch)
            or mask.shape[1] not in (1, frames)
            or mask.shape[2] != 1
            or mask.shape[-2:] != (height, width)
        ):
            raise ValueError(f"mask must have shape (B, F, 1, {height}, {width}), got {tuple(mask.shape)}")
        if acs_mask.ndim == 3:
            acs_mask = acs_mask[:, None, None]
        if (
            acs_mask.ndim != 5
            or acs_mask.shape[0] not in (1, batch)
            or acs_mask.shape[1:3] != (1, 1)
            or acs_mask.shape[-2:] != (height, width)
        ):
            raise ValueError(
                f"acs_mask must have shape (B, 1, 1, {height}, {width}) or (B, {height}, {width}), "
                f"got {tuple(acs_mask.shape)}"
            )
        if condition.shape != (batch, 3) or condition.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"condition must be an integer (B, 3) tensor of (modality, pattern, acceleration) indices, "
                f"got {condition.dtype} {tuple(condition.shape)} for B = {batch}"
            )
        lows, highs = condition.amin(dim=0).tolist(), condition.amax(dim=0).tolist()
        labels = ("modality", "pattern", "acceleration")
        for label, size, low, high in zip(labels, self.condition_embedding.sizes, lows, highs):
            if low < 0 or high >= size:
                raise ValueError(f"condition {label} index out of range [0, {size}): got values in [{low}, {high}]")
        return mask, acs_mask

    def sensitivity_maps(self, masked_kspace: torch.Tensor, mask: torch.Tensor, acs_mask: torch.Tensor) -> torch.Tensor:
        """Estimated coil sensitivities (B, 1, C, H, W), normalised to ``sum_c |S_c|^2 = 1``."""
        if acs_mask.ndim == 3:
            acs_mask = acs_mask[:, None, None]
        return self.sens_net(masked_kspace, mask, acs_mask)

    def forward_kspace(
        self, masked_kspace: torch.Tensor, mask: torch.Tensor, acs_mask: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """Run all cascades; return the predicted multi-coil k-space (B, F, C, H, W)."""
        mask, acs_mask = self._validate(masked_kspace, mask, acs_mask, condition)
        sens_maps = self.sens_net(masked_kspace, mask, acs_mask)
        embedding = self.condition_embedding(condition.long())
        kspace = masked_kspace
        for cascade in self.cascades:
            if self.use_checkpoint and self.training:
                kspace = checkpoint(cascade, kspace, masked_kspace, mask, sens_maps, embedding, use_reentrant=False)
            else:
                kspace = cascade(kspace, masked_kspace, mask, sens_maps, embedding)
        return kspace

    def forward(
        self, masked_kspace: torch.Tensor, mask: torch.Tensor, acs_mask: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """RSS magnitude (B, H, W) of the centre frame of the reconstructed k-space."""
        kspace = self.forward_kspace(masked_kspace, mask, acs_mask, condition)
        return rss_torch(ifft2c_torch(kspace[:, self.num_frames // 2]), coil_dim=1)


@dataclass(frozen=True)
class PromptUnrolledNetConfig:
    """Constructor arguments of :class:`PromptUnrolledNet` as a typed record (defaults: the smoke scale)."""

    num_cascades: int = 3
    chans: int = 8
    pools: int = 2
    sens_chans: int = 4
    sens_pools: int = 2
    adjacent_frames: int = 1
    num_prompts: int = 4
    prompt_dim: int = 8
    num_modalities: int = 10
    num_patterns: int = 4
    num_accelerations: int = 8
    prompt_size: int = 8
    condition_dim: int = 16
    use_checkpoint: bool = False

    def build(self) -> PromptUnrolledNet:
        """Instantiate the network."""
        return PromptUnrolledNet(**asdict(self))


__all__ = [
    "PromptUnrolledNet",
    "PromptUnrolledNetConfig",
    "count_parameters",
    "sens_expand",
    "sens_reduce",
    "soft_data_consistency",
    "time_averaged_acs_kspace",
]
