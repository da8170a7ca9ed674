"""ct_fairness-train@<variable>: one model per (experiment, fold, group), the same seed within a fold, tiny models
that learn, Ray tasks that train the same bytes as the serial loop, and no timings in hashed outputs."""
import json
import shutil

import pandas as pd
import pytest
import torch

from stages.common.params import ParamsError, validate_step
from stages.ct_fairness.model import NetworkConfig, load_network
from stages.ct_fairness.train import TrainJob, TrainParams, jobs_for, network_config, polynomial_decay, run_jobs, train, train_one
from tests.ct_fairness.cases import TINY, TINY_NETWORK, VARIABLES, blob_cases, file_digests, train_params
from tests.helpers import repo_params, run_step, with_overrides


@pytest.mark.parametrize("overrides, message", [
    ({"ct_fairness.train.flip_axes": [0, 2]}, r"ct_fairness.train.flip_axes: .*left-right"),
    ({"ct_fairness.train.network.strides": [2]}, r"ct_fairness.train.network: .*len\(strides\) must be len\(channels\) - 1"),
    ({"ct_fairness.train.network.patch": [32, 32, 30]}, r"ct_fairness.train.network: .*multiple of the strides' product 4"),
    ({"ct_fairness.train.num_threads": 0}, r"ct_fairness.train.num_threads: "),
    ({"ct_fairness.train.parallel.backend": "dask"}, r"ct_fairness.train.parallel.backend: "),
])
def test_bad_params_fail_naming_the_key(overrides, message):
    with pytest.raises(ParamsError, match=message):
        validate_step("ct_fairness", "train", TrainParams, with_overrides(repo_params(), overrides))


def test_the_network_is_built_from_the_params_section():
    for scale in ("smoke", "full"):
        params = validate_step("ct_fairness", "train", TrainParams, repo_params(), scale=scale)[1]
        section = params.network.model_dump()
        assert network_config(params) == NetworkConfig(**section)
        assert {k: v for k, v in network_config(params).to_dict().items() if k != "num_classes"} == section


def test_polynomial_decay():
    assert polynomial_decay(0, 100) == 1.0 and polynomial_decay(100, 100) == 0.0
    assert polynomial_decay(50, 100) == pytest.approx(0.5 ** 0.9)


def test_jobs_share_a_seed_within_a_fold(tmp_path):
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


def test_a_tiny_model_learns_a_bright_blob(tmp_path):
    import numpy as np

    from stages.ct_fairness.model import predict_labels

    paths = blob_cases(tmp_path)
    params = train_params({**TINY_NETWORK, "iterations": 40, "batch_size": 2, "learning_rate": 0.03, "log_every": 10,
                           "intensity_shift": 0.0, "intensity_scale": 0.0, "num_threads": 1})
    job = TrainJob("e", "sex", "x", 0, "F", ("c0", "c1", "c2"), tuple(paths), seed=1)
    result = train_one(job, params, "cpu")
    assert [h["step"] for h in result["history"]] == [10, 20, 30, 40]
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert result["patches"] == 40 * 2 and result["threads"] == 1
    config = network_config(params)
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


def test_ray_tasks_train_the_same_models_with_the_threads_from_params(tmp_path):
    """Starts a local Ray (about 20-40 s). Ray sets OMP_NUM_THREADS=1 per task; the task still uses num_threads."""
    paths = blob_cases(tmp_path)
    serial = train_params({**TINY_NETWORK, "iterations": 6, "batch_size": 2, "log_every": 3, "num_threads": 2})
    on_ray = train_params({**TINY_NETWORK, "iterations": 6, "batch_size": 2, "log_every": 3, "num_threads": 2,
                           "parallel": {"backend": "ray", "address": None, "cpus_per_model": 1.0, "gpus_per_model": 0.0}})
    jobs = [TrainJob("e", "sex", "x", 0, "F", ("c0", "c1"), tuple(paths[:2]), seed=1),
            TrainJob("e", "sex", "x", 0, "M", ("c1", "c2"), tuple(paths[1:]), seed=1)]
    expected = run_jobs(jobs, serial, "cpu")
    got = run_jobs(jobs, on_ray, "cpu")
    for a, b in zip(expected, got, strict=True):
        assert a["history"] == b["history"] and b["threads"] == 2
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not all(torch.equal(got[0]["state_dict"][k], got[1]["state_dict"][k]) for k in got[0]["state_dict"])


@pytest.mark.parametrize("variable", VARIABLES)
def test_each_variable_trains_one_model_per_fold_and_group_on_the_split_cases(tiny_study, variable):
    models_dir = tiny_study.data / "models" / variable
    models = pd.read_csv(models_dir / "models.csv", dtype={"train_cases": str})
    folds = pd.read_csv(tiny_study.data / "interim" / "splits" / "folds.csv", dtype={"case": str})
    train_rows = folds[(folds.variable == variable) & (folds.role == "train")]
    assert len(models) == train_rows.groupby(["experiment", "fold", "group"]).ngroups == 10
    params = tiny_study.contexts[f"ct_fairness-train@{variable}"].params
    for model in models.itertuples():
        expected = train_rows[(train_rows.experiment == model.experiment) & (train_rows.fold == model.fold)
                              & (train_rows.group == model.group)].case
        assert sorted(model.train_cases.split()) == sorted(expected)
        network, config, saved = load_network(models_dir / model.model, torch.device("cpu"))
        assert config == network_config(params) and saved["train_cases"] == model.train_cases.split()
        assert [h["step"] for h in saved["history"]] == [2, 4] and saved["history"][-1]["loss"] == pytest.approx(model.final_loss)
        assert model.patches == params.iterations * params.batch_size * params.samples_per_volume
    curve = pd.read_csv(tiny_study.data / "metrics" / f"train_{variable}_loss.csv")
    histories = [torch.load(models_dir / m, weights_only=True)["history"] for m in models.model]
    assert curve.loss.tolist() == pytest.approx([sum(h[i]["loss"] for h in histories) / len(histories) for i in range(2)])


def test_timings_go_to_mlflow_only(tiny_study):
    for variable in VARIABLES:
        summary = json.loads((tiny_study.data / "metrics" / f"train_{variable}.json").read_text())
        assert summary == {"models": 10, "final_loss_mean": pytest.approx(summary["final_loss_mean"]), "patches": 10 * 4 * 2,
                           "device": "cpu", "backend": "serial"}
        assert "seconds" not in pd.read_csv(tiny_study.data / "models" / variable / "models.csv").columns
        returned = tiny_study.metrics[f"ct_fairness-train@{variable}"]
        assert returned["training_seconds"] > 0 and returned["patches_per_second"] > 0
        assert tiny_study.contexts[f"ct_fairness-train@{variable}"].tracker.params == {"variable": variable}


def test_a_rerun_writes_the_same_bytes(tiny_study, tmp_path):
    data = tmp_path / "data" / "ct_fairness"
    shutil.copytree(tiny_study.data / "interim", data / "interim")
    run_step(train, tmp_path, TINY, item="age")
    assert file_digests(data / "models" / "age") == file_digests(tiny_study.data / "models" / "age")
    for name in ("train_age.json", "train_age_loss.csv"):
        assert (data / "metrics" / name).read_bytes() == (tiny_study.data / "metrics" / name).read_bytes()


def test_a_variable_without_experiments_writes_empty_results(tiny_study, tmp_path):
    """With `preprocess.cross_dataset: false` the splits hold no dataset experiment: train@dataset trains nothing."""
    data = tmp_path / "data" / "ct_fairness"
    shutil.copytree(tiny_study.data / "interim", data / "interim")
    splits = json.loads((data / "interim" / "splits" / "splits.json").read_text())
    splits["experiments"] = [e for e in splits["experiments"] if e["variable"] != "dataset"]
    (data / "interim" / "splits" / "splits.json").write_text(json.dumps(splits))
    _, metrics = run_step(train, tmp_path, TINY, item="dataset")
    assert metrics["models"] == 0 and metrics["final_loss_mean"] is None
    assert pd.read_csv(data / "models" / "dataset" / "models.csv").empty
    assert pd.read_csv(data / "metrics" / "train_dataset_loss.csv").columns.tolist() == ["step", "loss"]
    assert json.loads((data / "metrics" / "train_dataset.json").read_text())["models"] == 0


def test_seed_replicates_are_extra_models_with_their_own_seed(tiny_study):
    """Issue 18 item 8: train.seeds = 2 gives each (fold, group) a second model with another seed; both groups of a
    fold and replicate share the seed; replicate 0 keeps the single-seed name and seed."""
    splits = json.loads((tiny_study.data / "interim" / "splits" / "splits.json").read_text())
    cases = pd.read_csv(tiny_study.data / "interim" / "preprocessed" / "cases.csv", dtype={"case": str})
    folder = tiny_study.data / "interim" / "preprocessed"
    one, two = jobs_for("sex", splits, cases, folder, 0), jobs_for("sex", splits, cases, folder, 0, seeds=2)
    assert len(two) == 2 * len(one) == 20
    first = [j for j in two if j.replicate == 0]
    assert [(j.name, j.seed, j.cases) for j in first] == [(j.name, j.seed, j.cases) for j in one]
    second = [j for j in two if j.replicate == 1]
    assert {j.name for j in second} == {f"{j.name}_seed1" for j in one}
    for fold in range(5):
        seeds = {j.seed for j in second if j.fold == fold}
        assert len(seeds) == 1 and seeds.isdisjoint({j.seed for j in one if j.fold == fold})
