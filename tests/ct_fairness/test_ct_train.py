"""Training jobs: one per (experiment, fold, group), same seed within a fold, tiny models that learn."""
import numpy as np
import pytest
import torch

from stages.ct_fairness.model import NetworkConfig, predict_labels
from stages.ct_fairness.train import TrainJob, TrainParams, jobs_for, polynomial_decay, train_one
from stages.common.params import ParamsError, validate_section

torch.set_num_threads(1)


def test_left_right_flips_are_refused_with_the_key_named():
    with pytest.raises(ParamsError, match=r"ct_fairness.train.flip_axes: .*left-right"):
        validate_section(TrainParams, {"flip_axes": [0, 2]}, "ct_fairness.train")


def test_polynomial_decay():
    assert polynomial_decay(0, 100) == 1.0 and polynomial_decay(100, 100) == 0.0
    assert polynomial_decay(50, 100) == pytest.approx(0.5 ** 0.9)


def test_jobs_share_a_seed_within_a_fold(tmp_path):
    import pandas as pd

    splits = {"experiments": [{
        "name": "sex_x", "variable": "sex", "dataset": "x", "groups": ["F", "M"],
        "folds": [{"index": f, "test": {"F": [f"f{f}"], "M": [f"m{f}"]},
                   "train": {"F": [f"f{g}" for g in range(3) if g != f], "M": [f"m{g}" for g in range(3) if g != f]}}
                  for f in range(3)]},
        {"name": "age_x", "variable": "age", "dataset": "x", "groups": ["young", "old"], "folds": []}]}
    cases = pd.DataFrame({"case": [f"{s}{i}" for s in "fm" for i in range(3)], "path": [f"x/{s}{i}.npz" for s in "fm" for i in range(3)]})
    jobs = jobs_for("sex", splits, cases, tmp_path, seed=0)
    assert [(j.fold, j.group) for j in jobs] == [(0, "F"), (0, "M"), (1, "F"), (1, "M"), (2, "F"), (2, "M")]
    assert jobs[0].seed == jobs[1].seed != jobs[2].seed
    assert jobs[1].cases == ("m1", "m2") and jobs[1].paths == (str(tmp_path / "x/m1.npz"), str(tmp_path / "x/m2.npz"))
    assert jobs_for("dataset", splits, cases, tmp_path, seed=0) == []


def blob_case(path, rng):
    image = rng.normal(0.2, 0.02, (1, 16, 16, 12)).astype(np.float32)
    label = np.zeros((1, 16, 16, 12), dtype=np.uint8)
    x, y = rng.integers(3, 9, 2)
    label[0, x:x + 5, y:y + 5, 3:8] = 1
    image[label > 0] = 0.8
    np.savez(path, image=image, label=label)


def test_a_tiny_model_learns_a_bright_blob(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"c{index}.npz"))
        blob_case(paths[-1], rng)
    params = TrainParams(channels=[4, 8], strides=[2], patch=(16, 16, 12), iterations=40, batch_size=2, learning_rate=0.03,
                         log_every=10, intensity_shift=0.0, intensity_scale=0.0)
    job = TrainJob("e", "sex", "x", 0, "F", ("c0", "c1", "c2"), tuple(paths), seed=1)
    result = train_one(job, params, "cpu")
    assert [h["step"] for h in result["history"]] == [10, 20, 30, 40]
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert result["patches"] == 40 * 2
    config = params.network()
    network = config.build()
    network.load_state_dict(result["state_dict"])
    network.eval()
    with np.load(paths[0]) as arrays:
        prediction = predict_labels(network, torch.from_numpy(arrays["image"]), config.patch, 0.25, 2).numpy()
        truth = arrays["label"][0]
    overlap = ((prediction == 1) & (truth == 1)).sum()
    assert 2 * overlap / ((prediction == 1).sum() + (truth == 1).sum()) > 0.5
    again = train_one(job, params, "cpu")                     # deterministic for a seed on CPU
    assert all(torch.equal(again["state_dict"][k], v) for k, v in result["state_dict"].items())


def test_network_config_round_trips():
    config = NetworkConfig((4, 8, 16), (2, 2), 1, (32, 32, 28))
    assert NetworkConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="strides"):
        NetworkConfig((4, 8), (2, 2)).build()
