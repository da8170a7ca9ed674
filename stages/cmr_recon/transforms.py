"""Centred orthonormal 2-D FFTs and coil combination in numpy (the torch versions are in ``model``).

The FFTs act on the last two axes (ky, kx), as in fastMRI and the CMRxRecon tutorial:
``ifft2c(k) = fftshift(ifft2(ifftshift(k), norm="ortho"))``.
"""
from __future__ import annotations

import numpy as np

AXES = (-2, -1)


def fft2c(image: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=AXES), norm="ortho"), axes=AXES)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=AXES), norm="ortho"), axes=AXES)


def rss(coil_images: np.ndarray, coil_axis: int) -> np.ndarray:
    """Root-sum-of-squares magnitude over ``coil_axis``."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=coil_axis))
