import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stages.cmr_recon.metrics import (
    aggregate,
    center_crop,
    fastmri_metrics,
    official_mask_name,
    official_metrics,
    official_modality_group,
    official_task_scores,
    select_validation_slices_frames,
    validation_crop,
    validation_crop_shape,
    validation_indices,
)


def image_pairs(n: int = 6, h: int = 40, w: int = 52, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.abs(gaussian_filter(rng.standard_normal((n, h, w)), sigma=(0, 3, 3))) * 10 + 1
    recon = gt + rng.normal(0, 0.3, gt.shape) + np.linspace(0, 1, n)[:, None, None] * gt
    return gt, recon


def skimage_reference(gt: np.ndarray, recon: np.ndarray, blackblood: bool) -> dict[str, np.ndarray]:
    """Evaluation.py's calmetric, one image at a time, roles swapped as Main_Score2024 calls it."""
    rows = []
    for g, r in zip(gt, recon):
        g_z = (g - g.mean()) / (g.std() + 1e-8)
        r_z = (r - r.mean()) / (r.std() + 1e-8)
        first, second = (g_z, r_z) if blackblood else (r_z, g_z)
        rows.append(
            (
                peak_signal_noise_ratio(first, second, data_range=first.max()),
                structural_similarity(first, second, data_range=first.max()),
                np.linalg.norm(first - second) ** 2 / np.linalg.norm(first) ** 2,
            )
        )
    psnr, ssim, nmse = map(np.array, zip(*rows))
    return {"psnr": psnr, "ssim": ssim, "nmse": nmse}


@pytest.mark.parametrize("blackblood", [False, True])
def test_official_metrics_match_the_skimage_loop(blackblood):
    gt, recon = image_pairs()
    ours = official_metrics(gt, recon, blackblood=blackblood)
    reference = skimage_reference(gt, recon, blackblood)
    for name in ("psnr", "ssim", "nmse"):
        assert ours[name].shape == (6,)
        np.testing.assert_allclose(ours[name], reference[name], atol=1e-4, rtol=0)


def test_the_swapped_data_range_matters():
    gt, recon = image_pairs()
    recon = recon**2  # changes the z-scored maximum of the reconstruction
    four_d = official_metrics(gt, recon, blackblood=False)
    three_d = official_metrics(gt, recon, blackblood=True)
    assert np.abs(four_d["psnr"] - three_d["psnr"]).max() > 0.1


def test_identical_images_are_perfect():
    gt, _ = image_pairs(n=2)
    result = official_metrics(gt, gt.copy())
    np.testing.assert_allclose(result["ssim"], 1.0, atol=1e-12)
    np.testing.assert_allclose(result["nmse"], 0.0, atol=1e-12)
    assert np.isinf(result["psnr"]).all()


def test_z_scoring_makes_metrics_blind_to_affine_intensity_changes():
    gt, recon = image_pairs()
    base = official_metrics(gt, recon)
    scaled = official_metrics(gt, 7.5 * recon + 3.0)
    for name in base:
        np.testing.assert_allclose(scaled[name], base[name], rtol=1e-6)


def test_torch_path_equals_numpy_path():
    gt, recon = image_pairs()
    numpy_result = official_metrics(gt, recon)
    torch_result = official_metrics(torch.from_numpy(gt).float(), torch.from_numpy(recon).float())
    for name in numpy_result:
        assert isinstance(torch_result[name], np.ndarray)
        np.testing.assert_allclose(torch_result[name], numpy_result[name], atol=1e-4)


def test_bad_shapes_are_rejected():
    gt, recon = image_pairs()
    with pytest.raises(ValueError, match="differ in shape"):
        official_metrics(gt, recon[:, :-1])
    with pytest.raises(ValueError, match="N, H, W"):
        official_metrics(gt[0], recon[0])
    with pytest.raises(ValueError, match="SSIM window"):
        official_metrics(gt[:, :5], recon[:, :5])


def test_fastmri_metrics_match_skimage_volume_definitions():
    gt, recon = image_pairs(n=4)
    result = fastmri_metrics(gt, recon)
    max_value = gt.max()
    assert result["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, recon, data_range=max_value), abs=1e-6)
    ssim = np.mean([structural_similarity(g, r, data_range=max_value) for g, r in zip(gt, recon)])
    assert result["ssim"] == pytest.approx(ssim, abs=1e-6)
    assert result["nmse"] == pytest.approx(np.sum((gt - recon) ** 2) / np.sum(gt**2), rel=1e-9)


@pytest.mark.parametrize(
    "nz,expected", [(1, [0]), (2, [0, 1]), (3, [0, 1]), (5, [1, 2]), (6, [1, 2]), (9, [3, 4]), (10, [3, 4])]
)
def test_validation_slices_follow_run4ranking(nz, expected):
    slices, _ = validation_indices(nz, 12, "cine_sax")
    assert slices == expected
    if nz >= 3:  # run4ranking.py: round(sz/2 + 1e-5) - 2 : round(sz/2 + 1e-5)
        start = round(nz / 2 + 0.00001)
        assert slices == list(range(start - 2, start))


def test_validation_frames_per_modality():
    assert validation_indices(4, 12, "cine_lax")[1] == [0, 1, 2]
    assert validation_indices(4, 9, "T1map")[1] == list(range(9))
    assert validation_indices(4, 3, "T2map")[1] == [0, 1, 2]
    assert validation_indices(4, 1, "blackblood")[1] == [0]
    with pytest.raises(ValueError, match="first 3 frames"):
        validation_indices(4, 2, "cine_sax")


def test_select_validation_slices_frames_shapes_and_content():
    volume = np.arange(12 * 6 * 4 * 5).reshape(12, 6, 4, 5)
    selected = select_validation_slices_frames(volume, "cine_sax")
    assert selected.shape == (3, 2, 4, 5)
    np.testing.assert_array_equal(selected, volume[:3, 1:3])
    mapping = select_validation_slices_frames(volume[:9], "T1map")
    assert mapping.shape == (9, 2, 4, 5)
    blackblood = select_validation_slices_frames(volume[0], "blackblood")
    np.testing.assert_array_equal(blackblood, volume[0, 1:3])
    with pytest.raises(ValueError, match="blackblood"):
        select_validation_slices_frames(volume, "blackblood")


def test_validation_crop_is_the_centred_third_by_half():
    # sx (MATLAB's first axis) is the readout nx = our last axis: crop (round(ny/2), round(nx/3))
    assert validation_crop_shape(ny=200, nx=400) == (100, 133)
    assert validation_crop_shape(ny=205, nx=400) == (103, 133)  # MATLAB round(102.5) = 103
    images = np.arange(2 * 200 * 400).reshape(2, 200, 400)
    cropped = validation_crop(images)
    # run4ranking.py crop: floor(s/2) + ceil(-c/2) : floor(s/2) + ceil(c/2)
    np.testing.assert_array_equal(cropped, images[:, 100 - 50 : 100 + 50, 200 - 66 : 200 + 67])
    np.testing.assert_array_equal(center_crop(np.arange(7)[None, :].repeat(3, 0), (1, 3)), [[2, 3, 4]])
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(images, (300, 10))


def test_aggregate_means_per_file_then_cell_then_over_cells():
    rows = [
        dict(file="a", modality="cine_sax", pattern="Uniform", acceleration=4, psnr=10.0, ssim=0.5, nmse=0.1),
        dict(file="b", modality="cine_sax", pattern="Uniform", acceleration=4, psnr=20.0, ssim=0.7, nmse=0.3),
        dict(file="c", modality="T1map", pattern="Uniform", acceleration=4, psnr=28.0, ssim=0.9, nmse=0.0),
        dict(file="c", modality="T1map", pattern="Uniform", acceleration=4, psnr=32.0, ssim=0.9, nmse=0.2),
        dict(file="c", modality="T1map", pattern="Uniform", acceleration=4, psnr=30.0, ssim=0.9, nmse=0.1),
    ]
    result = aggregate(rows)
    assert len(result["per_file"]) == 3
    cells = result["per_cell"].set_index("modality")
    assert cells.loc["cine_sax", "psnr"] == pytest.approx(15.0)
    assert cells.loc["T1map", "psnr"] == pytest.approx(30.0)
    assert cells.loc["T1map", "n_files"] == 1
    assert result["overall"]["psnr"] == pytest.approx(22.5)  # not the file mean 20, nor image mean 24
    assert result["overall"]["nmse"] == pytest.approx((0.2 + 0.1) / 2)
    with pytest.raises(ValueError, match="psnr"):
        aggregate([{k: v for k, v in rows[0].items() if k != "psnr"}])


def test_official_cell_names():
    assert [official_modality_group(m) for m in ("cine_lvot", "T2map", "aorta_tra", "flow2d", "blackblood")] == [
        "Cine", "Mapping", "Aorta", "Flow2d", "BlackBlood"
    ]
    assert official_mask_name("Uniform", 8) == "Uniform8"
    assert official_mask_name("ktRadial", 16) == "ktRadial"
    assert math.isfinite(aggregate(
        [dict(file="x", modality="T1map", pattern="Uniform", acceleration=4, psnr=1.0, ssim=1.0, nmse=1.0,
              group="Mapping", mask="Uniform4")],
        cell_keys=("group", "mask"),
    )["overall"]["psnr"])


def official_val_score(ranks: pd.DataFrame, tasknum: int) -> dict:
    """Val_Score2024.py's aggregation, ported line by line (statis_metrics_and_num_files + main's loop).

    ``ranks``: one row per (Case, File, KUS) with the file's mean PSNR/SSIM/NMSE, as the scorer builds it.
    """
    if tasknum == 1:
        modality = ['Tagging', 'Mapping', 'Cine', 'Aorta', 'BlackBlood', 'Flow2d']
        undermasklist = ["Uniform4", "Uniform8", "Uniform10"]
    else:
        modality = ['Tagging', 'Mapping', 'Cine', 'Aorta']
        undermasklist = ["ktUniform", "ktGaussian", "ktRadial"]
    scores, psnr_all, ssim_all, nmse_all = {}, [], [], []
    for modal_name in modality:
        modal = modal_name.lower()
        for kus in undermasklist:
            if modal == 'mapping':
                df = ranks.loc[(ranks['File'].str.contains('map')) & (ranks['KUS'].str.contains(kus))]
            elif modal == 'cine':
                df = ranks.loc[(ranks['File'].str.contains('cine')) & (ranks['KUS'].str.contains(kus))]
            elif modal == 'aorta':
                df = ranks.loc[(ranks['File'].str.contains('aorta')) & (ranks['KUS'].str.contains(kus))]
            else:
                df = ranks.loc[(ranks['File'] == modal) & (ranks['KUS'].str.contains(kus))]
            values = [round(df['PSNR'].mean(), 4), round(df['SSIM'].mean(), 4), round(df['NMSE'].mean(), 4)]
            psnr_all.append(values[0])
            ssim_all.append(values[1])
            nmse_all.append(values[2])
            for metric, value in zip(["PSNR", "SSIM", "NMSE"], values):
                scores[f"{modal_name}_{kus}_{metric}"] = value
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores["All_PSNR"] = round(np.nanmean(psnr_all), 4)
        scores["All_SSIM"] = round(np.nanmean(ssim_all), 4)
        scores["All_NMSE"] = round(np.nanmean(nmse_all), 4)
    return scores


def test_official_task_scores_equal_the_ported_val_score2024():
    rng = np.random.default_rng(7)
    modalities = ["cine_sax", "cine_lax", "T1map", "T2map", "tagging", "aorta_sag", "flow2d", "blackblood"]
    settings = [("Uniform", 4), ("Uniform", 8), ("Uniform", 10), ("ktUniform", 8), ("ktUniform", 16),
                ("ktGaussian", 8), ("ktRadial", 16), ("ktRadial", 24)]
    rows = []
    for case in ("P001", "P002", "P003"):
        for modality in modalities:
            for pattern, r in settings:
                for image in range(3):  # per-image rows: the scorer's file mean is their mean
                    rows.append({"file": f"{case}/{modality}", "modality": modality, "pattern": pattern, "acceleration": r,
                                 "psnr": rng.uniform(20, 40), "ssim": rng.uniform(0.5, 1), "nmse": rng.uniform(0, 0.2),
                                 "case": case, "image": image})
    frame = pd.DataFrame(rows)
    ranks = frame.groupby(["case", "modality", "pattern", "acceleration"], as_index=False)[["psnr", "ssim", "nmse"]].mean()
    ranks = pd.DataFrame({"Case": ranks.case, "File": ranks.modality, "KUS": ranks.pattern + ranks.acceleration.astype(str),
                          "PSNR": ranks.psnr, "SSIM": ranks.ssim, "NMSE": ranks.nmse})
    for task in (1, 2):
        ours = official_task_scores(frame.to_dict("records"), task)
        # The scorer's table of one task holds only that task's masks ("ktUniform8" contains "Uniform8").
        task_ranks = ranks[ranks.KUS.str.startswith("kt") == (task == 2)]
        official = official_val_score(task_ranks, task)
        for cell, values in ours["cells"].items():
            for metric in ("psnr", "ssim", "nmse"):
                assert values[metric] == official[f"{cell}_{metric.upper()}"], (task, cell, metric)
        for metric in ("psnr", "ssim", "nmse"):
            assert ours["All"][metric] == official[f"All_{metric.upper()}"]
    # Task 2 leaves out Flow2d/BlackBlood and the Uniform rows; Task 1 pools no k-t pattern.
    task2 = official_task_scores(frame.to_dict("records"), 2)
    assert set(task2["cells"]) == {f"{g}_{m}" for g in ("Tagging", "Mapping", "Cine", "Aorta")
                                   for m in ("ktUniform", "ktGaussian", "ktRadial")}
    assert task2["cells"]["Cine_ktRadial"]["n_files"] == 3 * 2 * 2  # 3 cases x 2 cine files x 2 accelerations pooled


def test_official_task_scores_skip_cells_without_files_as_the_scorer_does():
    rows = [{"file": "P1/cine_sax", "modality": "cine_sax", "pattern": "Uniform", "acceleration": 4,
             "psnr": 30.0, "ssim": 0.9, "nmse": 0.01},
            {"file": "P1/T1map", "modality": "T1map", "pattern": "Uniform", "acceleration": 8,
             "psnr": 20.0, "ssim": 0.7, "nmse": 0.03}]
    scores = official_task_scores(rows, 1)
    assert scores["All"] == {"psnr": 25.0, "ssim": 0.8, "nmse": 0.02}
    assert scores["cells"]["Cine_Uniform10"]["n_files"] == 0 and np.isnan(scores["cells"]["Cine_Uniform10"]["psnr"])
    assert np.isnan(official_task_scores(rows, 2)["All"]["psnr"])
