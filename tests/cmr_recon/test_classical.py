import numpy as np
import pytest

from stages.cmr_recon.classical import (
    espirit_maps,
    sense_magnitude,
    sense_recon,
    time_averaged_kspace,
    zero_filled,
)
from stages.cmr_recon.masks import make_mask
from stages.cmr_recon.transforms import fft2c


def nmse(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.sum((reference - estimate) ** 2) / np.sum(reference**2))


@pytest.fixture(scope="module")
def scene():
    """A smooth object with a structured interior, 8 smooth coils, 3 frames, no noise."""
    ny, nx, nc, nt = 48, 56, 8, 3
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    body = (x / 0.8) ** 2 + (y / 0.7) ** 2 < 1
    images = []
    for t in range(nt):
        blob = ((x - 0.1 * t) / 0.25) ** 2 + (y / 0.3) ** 2 < 1
        image = body * (0.5 + 0.2 * np.cos(3 * x)) + 0.8 * blob
        images.append(image * np.exp(1j * 0.4 * (x + y)))
    images = np.array(images)
    centres = [(np.cos(a) * 1.6, np.sin(a) * 1.6) for a in np.linspace(0, 2 * np.pi, nc, endpoint=False)]
    maps = np.array([1 / np.hypot(x - cx, y - cy) * np.exp(1j * k) for k, (cx, cy) in enumerate(centres)])
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    kspace = fft2c(images[:, None] * maps[None])
    return {"images": images, "maps": maps, "kspace": kspace, "target": np.abs(images)}


def test_zero_filled_of_full_kspace_is_the_rss_image(scene):
    result = zero_filled(scene["kspace"])
    assert result.shape == scene["target"].shape
    # sum |S|^2 = 1, so the RSS of the coil images is the object magnitude
    np.testing.assert_allclose(result, scene["target"], atol=1e-10)
    with pytest.raises(ValueError, match="nc, ny, nx"):
        zero_filled(np.zeros((4, 4), dtype=complex))


def test_time_averaged_kspace_divides_by_sample_counts():
    kus = np.zeros((2, 1, 2, 2), dtype=complex)
    mask = np.array([[[1, 0], [1, 0]], [[1, 1], [0, 0]]], dtype=bool)
    kus[0, 0] = [[2, 0], [4, 0]]
    kus[1, 0] = [[6, 8], [0, 0]]
    np.testing.assert_allclose(time_averaged_kspace(kus, mask)[0], [[4, 8], [4, 0]])


def test_sense_with_full_sampling_recovers_the_rss_image(scene):
    maps = espirit_maps(scene["kspace"][0], calib_width=16)
    assert maps.shape == scene["maps"].shape
    image = sense_recon(scene["kspace"][0], np.ones(scene["kspace"].shape[-2:], dtype=bool), maps, lamda=0.0)
    assert image.shape == scene["kspace"].shape[-2:] and np.iscomplexobj(image)
    assert nmse(scene["target"][0], sense_magnitude(image, maps)) < 1e-4


def test_sense_beats_zero_filled_when_undersampled(scene):
    ny, nx = scene["kspace"].shape[-2:]
    mask = make_mask("ktUniform", nx=nx, ny=ny, nt=3, acceleration=4)
    kus = scene["kspace"] * mask[:, None]
    maps = espirit_maps(time_averaged_kspace(kus, mask))  # one map set for all frames
    for frame in range(3):
        sense = sense_magnitude(sense_recon(kus[frame], mask[frame], maps), maps)
        zero = zero_filled(kus[frame])
        target = scene["target"][frame]
        assert nmse(target, sense) < 0.5 * nmse(target, zero)


def test_sense_magnitude_is_rss_of_model_coil_images():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((5, 6)) + 1j * rng.standard_normal((5, 6))
    maps = rng.standard_normal((3, 5, 6)) + 1j * rng.standard_normal((3, 5, 6))
    expected = np.sqrt(np.sum(np.abs(maps * image) ** 2, axis=0))
    np.testing.assert_allclose(sense_magnitude(image, maps), expected, rtol=1e-12)


def test_bad_parameters_are_rejected(scene):
    with pytest.raises(ValueError, match="calib_width"):
        espirit_maps(scene["kspace"][0], calib_width=24)
    with pytest.raises(ValueError, match="complex"):
        espirit_maps(np.abs(scene["kspace"][0]))
    with pytest.raises(ValueError, match="do not match"):
        sense_recon(scene["kspace"][0], np.ones((4, 4), dtype=bool), scene["maps"])


def dynamic_scene(nt: int = 8):
    """A pulsing blob in a static body, 8 smooth coils, ``nt`` frames: sparse along temporal frequency."""
    ny, nx, nc = 64, 48, 8
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    body = ((x / 0.8) ** 2 + (y / 0.7) ** 2 < 1) * (0.5 + 0.2 * np.cos(3 * x))
    frames = []
    for t in range(nt):
        radius = 0.25 + 0.08 * np.cos(2 * np.pi * t / nt)
        frames.append((body + 0.8 * ((x / radius) ** 2 + (y / radius) ** 2 < 1)) * np.exp(1j * 0.3 * (x - y)))
    frames = np.array(frames)
    centres = [(np.cos(a) * 1.6, np.sin(a) * 1.6) for a in np.linspace(0, 2 * np.pi, nc, endpoint=False)]
    maps = np.array([1 / np.hypot(x - cx, y - cy) * np.exp(1j * k) for k, (cx, cy) in enumerate(centres)])
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    return frames, maps.astype(np.complex64), fft2c(frames[:, None] * maps[None]).astype(np.complex64)


def test_kt_sparse_sense_with_full_data_and_no_weight_is_the_coil_combination():
    from stages.cmr_recon.classical import kt_sparse_sense

    frames, maps, kspace = dynamic_scene(4)
    mask = np.ones((4, *kspace.shape[-2:]), bool)
    result = kt_sparse_sense(kspace, mask, maps, lamda=0.0, max_iter=5)
    np.testing.assert_allclose(result, frames, atol=1e-4 * np.abs(frames).max())


def test_kt_sparse_sense_beats_frame_by_frame_sense_on_a_sheared_kt_lattice():
    """At ktUniform R = 8 with 8 coils per-frame SENSE is ill-posed; the temporal L1 term recovers
    the frames from the other frames' lines (the point of a k-t baseline)."""
    from stages.cmr_recon.classical import kt_sparse_sense

    frames, maps, kspace = dynamic_scene(8)
    nt, nc, ny, nx = kspace.shape
    mask = make_mask("ktUniform", nx, ny, nt, 8, acs=8)
    kus = kspace * mask[:, None]
    target = np.abs(frames)
    kt = np.abs(kt_sparse_sense(kus, mask, maps, lamda=0.003, max_iter=60))
    sense = np.stack([sense_magnitude(sense_recon(kus[t], mask[t], maps, max_iter=30, lamda=0.003), maps) for t in range(nt)])
    zf = zero_filled(kus)
    assert nmse(target, kt) < 0.5 * nmse(target, sense)
    assert nmse(target, kt) < 0.3 * nmse(target, zf)
