"""The Ray backend of ct_fairness-train gives the same models as the serial one (starts a local Ray: ~30 s)."""
import numpy as np
import torch

from stages.ct_fairness.train import ParallelParams, TrainJob, TrainParams, run_jobs
from tests.ct_fairness.test_ct_train import blob_case


def test_ray_tasks_train_the_same_models_as_the_serial_loop(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"c{index}.npz"))
        blob_case(paths[-1], rng)
    serial = TrainParams(channels=[4, 8], strides=[2], patch=(16, 16, 12), iterations=6, batch_size=2, log_every=3)
    on_ray = serial.model_copy(update={"parallel": ParallelParams(backend="ray", cpus_per_model=1.0)})
    jobs = [TrainJob("e", "sex", "x", 0, "F", ("c0", "c1"), tuple(paths[:2]), seed=1),
            TrainJob("e", "sex", "x", 0, "M", ("c1", "c2"), tuple(paths[1:]), seed=1)]
    expected = run_jobs(jobs, serial, "cpu")
    got = run_jobs(jobs, on_ray, "cpu")
    for a, b in zip(expected, got):
        assert a["history"] == b["history"]
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not all(torch.equal(got[0]["state_dict"][k], got[1]["state_dict"][k]) for k in got[0]["state_dict"])
