"""Classical reconstructions: zero-filled RSS and SENSE with ESPIRiT coil maps (sigpy).

The challenge's own baselines are MATLAB demos (CmrxRecon/CMRxRecon2024
``CMRxReconDemo/mainZF.m`` and ``mainSENSE.m`` with the ESPIRiT toolbox); they are not ported.
Here sigpy's ``sigpy.mri.app.EspiritCalib`` and ``sigpy.mri.app.SenseRecon`` do the job, with
maps calibrated from the central ACS region as the study note prescribes. sigpy's
``sp.fft``/``sp.ifft`` are centred and orthonormal, like ``transforms.fft2c``/``ifft2c``.

Scaling (``sense_magnitude``): ESPIRiT maps are normalised to ``sum_c |S_c|^2 = 1`` inside
their support (0 outside, after the eigenvalue crop), so the SENSE image ``x`` is one
coil-combined image while the reference is the RSS of the fully sampled coil images. The
fair magnitude is the RSS of the coil images the SENSE model implies, ``rss_c(S_c x) =
|x| sqrt(sum_c |S_c|^2)``: it equals the RSS target wherever the maps explain the data, and
it is 0 where ESPIRiT cropped the maps (no signal), without any fit to the target.
"""
from __future__ import annotations

import numpy as np
import sigpy as sp
import sigpy.mri as mr
from threadpoolctl import threadpool_limits

from stages.cmr_recon.transforms import ifft2c, rss

MAX_CALIB_WIDTH = 16  # the challenge's ACS size


class ReconInputError(ValueError):
    """Inputs to a classical reconstruction have the wrong shape or parameters."""


def zero_filled(kus: np.ndarray) -> np.ndarray:
    """Zero-filled reconstruction: RSS magnitude ``(..., ny, nx)`` of k-space ``(..., nc, ny, nx)``."""
    kus = np.asarray(kus)
    if kus.ndim < 3:
        raise ReconInputError(f"expected multi-coil k-space (..., nc, ny, nx), got shape {kus.shape}")
    return rss(ifft2c(kus), coil_axis=-3)


def time_averaged_kspace(kus: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average undersampled k-space ``(nt, nc, ny, nx)`` over frames where each point was sampled.

    ``mask``: ``(nt, ny, nx)`` (or ``(ny, nx)``, same for all frames). Points sampled in no
    frame stay 0. Inside the ACS (sampled in every frame) this is the plain time average,
    which is what ESPIRiT calibrates from: one map set per slice, not per frame.
    """
    kus = np.asarray(kus)
    if kus.ndim != 4:
        raise ReconInputError(f"expected k-space (nt, nc, ny, nx), got shape {kus.shape}")
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), (kus.shape[0], *kus.shape[-2:]))
    counts = mask.sum(axis=0)
    summed = (kus * mask[:, None]).sum(axis=0)
    return np.where(counts > 0, summed / np.maximum(counts, 1), 0).astype(kus.dtype)


def calibration_block(kspace_slice: np.ndarray, calib_width: int = MAX_CALIB_WIDTH) -> np.ndarray:
    """The centred ``calib_width``^2 block of ``(nc, ny, nx)`` k-space that ESPIRiT calibrates from (sigpy's resize)."""
    return sp.resize(np.asarray(kspace_slice), (kspace_slice.shape[0], calib_width, calib_width))


def espirit_maps(
    kspace_slice: np.ndarray,
    calib_width: int = MAX_CALIB_WIDTH,
    thresh: float = 0.02,
    kernel_width: int = 6,
    crop: float = 0.95,
    max_iter: int = 100,
    device: int = -1,
) -> np.ndarray:
    """ESPIRiT sensitivity maps ``(nc, ny, nx)`` from the central ``calib_width``^2 of k-space.

    ``kspace_slice``: ``(nc, ny, nx)`` complex (e.g. ``time_averaged_kspace`` of one slice).
    ``calib_width`` must not exceed the 16 ACS lines (nor ``ny``/``nx``); sigpy takes a
    centred square, which lies inside both the 16 central columns of Cartesian masks and
    ktRadial's 16 x 16 ACS square. ``device``: sigpy device id (-1 = CPU).
    """
    kspace_slice = np.asarray(kspace_slice)
    if kspace_slice.ndim != 3 or not np.iscomplexobj(kspace_slice):
        raise ReconInputError(f"expected complex k-space (nc, ny, nx), got {kspace_slice.dtype} {kspace_slice.shape}")
    if not 0 < calib_width <= min(MAX_CALIB_WIDTH, *kspace_slice.shape[-2:]):
        raise ReconInputError(
            f"calib_width={calib_width} must lie in [1, {MAX_CALIB_WIDTH}] and fit {kspace_slice.shape[-2:]}"
        )
    if kernel_width >= calib_width:
        raise ReconInputError(f"kernel_width={kernel_width} must be smaller than calib_width={calib_width}")
    # The calibration SVD is small (~121 x 360); multi-threaded BLAS on a busy 2-core machine
    # made it 10-50x slower than one thread, so BLAS is pinned to one thread here.
    with threadpool_limits(limits=1, user_api="blas"):
        maps = _espirit(kspace_slice.astype(np.complex64), calib_width, thresh, kernel_width, crop, max_iter, device)
    return sp.to_device(maps, sp.cpu_device)


def _espirit(
    kspace_slice: np.ndarray,
    calib_width: int,
    thresh: float,
    kernel_width: int,
    crop: float,
    max_iter: int,
    device: int,
) -> np.ndarray:
    return mr.app.EspiritCalib(
        kspace_slice,
        calib_width=calib_width,
        thresh=thresh,
        kernel_width=kernel_width,
        crop=crop,
        max_iter=max_iter,
        device=sp.Device(device),
        show_pbar=False,
    ).run()


def sense_recon(
    kus_frame: np.ndarray,
    mask: np.ndarray,
    maps: np.ndarray,
    max_iter: int = 30,
    lamda: float = 1e-3,
    device: int = -1,
) -> np.ndarray:
    """SENSE image ``(ny, nx)`` complex: ``min_x 1/2 ||P F S x - y||^2 + lamda/2 ||x||^2`` by CG.

    ``kus_frame``: ``(nc, ny, nx)`` undersampled k-space, ``mask``: ``(ny, nx)``,
    ``maps``: ``(nc, ny, nx)``. To make ``lamda`` independent of the data's scale, the
    k-space is divided by the peak of its zero-filled RSS image before solving and the
    result multiplied back; ``lamda`` is thus relative to a unit-peak image.
    """
    kus_frame = np.asarray(kus_frame)
    mask = np.asarray(mask, dtype=bool)
    maps = np.asarray(maps)
    if kus_frame.ndim != 3 or maps.shape != kus_frame.shape or mask.shape != kus_frame.shape[-2:]:
        raise ReconInputError(
            f"shapes do not match: kus {kus_frame.shape} (nc, ny, nx), maps {maps.shape}, mask {mask.shape} (ny, nx)"
        )
    kus_frame = kus_frame * mask
    scale = float(zero_filled(kus_frame).max())
    if scale == 0.0:
        return np.zeros(kus_frame.shape[-2:], dtype=np.complex64)
    weights = mask.astype(kus_frame.real.dtype)
    image = mr.app.SenseRecon(
        kus_frame / scale,
        maps,
        lamda=lamda,
        weights=weights,
        max_iter=max_iter,
        device=sp.Device(device),
        show_pbar=False,
    ).run()
    return sp.to_device(image, sp.cpu_device) * scale


def sense_magnitude(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """RSS-comparable magnitude of a SENSE image: ``rss_c(S_c x) = |x| sqrt(sum_c |S_c|^2)``.

    See the module docstring for why this, not ``|x|``, is compared with the RSS target.
    """
    maps = np.asarray(maps)
    return np.abs(image) * np.sqrt(np.sum(np.abs(maps) ** 2, axis=-3))


def kt_sparse_sense(
    kus: np.ndarray,
    mask: np.ndarray,
    maps: np.ndarray,
    lamda: float = 0.01,
    max_iter: int = 40,
) -> np.ndarray:
    """k-t SPARSE-SENSE (ours, the temporal classical baseline): frames ``(nt, ny, nx)`` complex.

    ``min_x 1/2 sum_t ||P_t F S x_t - y_t||^2 + lamda ||F_t x||_1`` with ``F_t`` the
    orthonormal FFT along time (Lustig et al. 2006's k-t SPARSE; Otazo et al. 2010 with coil
    maps). Solved in the temporal-Fourier variable ``u = F_t x`` by sigpy's accelerated
    proximal gradient (``sigpy.app.LinearLeastSquares`` with an L1 prox); every operator has
    norm <= 1 (mask, unitary FFTs, ``sum_c |S_c|^2 <= 1``), so the step is 1. ``kus``
    ``(nt, nc, ny, nx)``, ``mask`` ``(nt, ny, nx)`` (or one ``(ny, nx)`` for all frames),
    ``maps`` ``(nc, ny, nx)``. ``lamda`` is relative to a unit-peak image, as in ``sense_recon``.
    """
    kus = np.asarray(kus)
    maps = np.asarray(maps)
    if kus.ndim != 4 or maps.shape != kus.shape[1:]:
        raise ReconInputError(f"shapes do not match: kus {kus.shape} (nt, nc, ny, nx), maps {maps.shape} (nc, ny, nx)")
    nt, nc, ny, nx = kus.shape
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), (nt, ny, nx))
    kus = kus * mask[:, None]
    scale = float(zero_filled(kus).max())
    if scale == 0.0:
        return np.zeros((nt, ny, nx), dtype=np.complex64)
    shape = (nt, 1, ny, nx)
    temporal = sp.linop.FFT(shape, axes=(0,))
    forward = (sp.linop.Multiply((nt, nc, ny, nx), mask[:, None].astype(np.float32))
               * sp.linop.FFT((nt, nc, ny, nx), axes=(-2, -1))
               * sp.linop.Multiply(shape, maps[None].astype(np.complex64))
               * temporal.H)
    with threadpool_limits(limits=1, user_api="blas"):
        u = sp.app.LinearLeastSquares(
            forward, (kus / scale).astype(np.complex64), proxg=sp.prox.L1Reg(shape, lamda),
            solver="GradientMethod", alpha=1.0, accelerate=True, max_iter=max_iter, show_pbar=False,
        ).run()
    frames = temporal.H(sp.to_device(u, sp.cpu_device))[:, 0]
    return (frames * scale).astype(np.complex64)
