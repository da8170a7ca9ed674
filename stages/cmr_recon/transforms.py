"""Centred orthonormal 2-D FFTs and coil combination, in numpy and torch.

The FFTs act on the last two axes (ky, kx), as in fastMRI and the CMRxRecon tutorial:
``ifft2c(k) = fftshift(ifft2(ifftshift(k), norm="ortho"))``.
"""
from __future__ import annotations

import numpy as np
import torch

_AXES = (-2, -1)


def fft2c(image: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=_AXES), norm="ortho"), axes=_AXES)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=_AXES), norm="ortho"), axes=_AXES)


def rss(coil_images: np.ndarray, coil_axis: int) -> np.ndarray:
    """Root-sum-of-squares magnitude over ``coil_axis``."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=coil_axis))


def fft2c_torch(image: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image, dim=_AXES), norm="ortho"), dim=_AXES)


def ifft2c_torch(kspace: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=_AXES), norm="ortho"), dim=_AXES)


def rss_torch(coil_images: torch.Tensor, coil_dim: int) -> torch.Tensor:
    return torch.sqrt(torch.sum(coil_images.abs() ** 2, dim=coil_dim))
