"""nova-train_normative in-process: fitted on the healthy slices only, saved byte-stably, timings to MLflow only."""
import dataclasses
import json
import shutil

import pytest

from stages.common.params import ParamsError
from stages.common.stage import UndeclaredPathError
from stages.nova.normative import DetectorConfig, load_model
from stages.nova.train_normative import train_normative
from tests.helpers import step_context
from tests.nova.tiny import TINY, file_hashes


def test_the_detector_is_fitted_and_saved(tiny_run):
    model = load_model(tiny_run.data / "models" / "normative.npz")
    assert model.config == DetectorConfig(size=64, bank_size=2000, depth_weight=0.5, smoothing_sigma=1.5)
    summary = json.loads((tiny_run.data / "metrics" / "train_normative.json").read_text())
    healthy = TINY["nova.ingest.healthy_slices"]
    assert summary["healthy_calibration"] == 4 and summary["healthy_fit"] == healthy - 4  # calibration_fraction 0.25
    assert set(summary["banks"]) == set(model.banks) and summary["threshold_z"] == pytest.approx(model.threshold)
    saved = json.loads((tiny_run.data / "models" / "normative.json").read_text())
    assert saved["config"] == model.config.model_dump()


def test_timings_go_to_mlflow_only_and_the_outputs_are_byte_stable(tiny_run, tiny_rerun):
    assert tiny_run.metrics("train_normative")["fit_seconds"] > 0
    assert "seconds" not in (tiny_run.data / "metrics" / "train_normative.json").read_text()
    assert file_hashes(tiny_run.data / "models") == file_hashes(tiny_rerun.data / "models")
    assert file_hashes(tiny_run.data / "metrics") == file_hashes(tiny_rerun.data / "metrics")


def test_healthy_slices_are_read_only_from_a_declared_folder(tiny_run, tmp_path):
    shutil.copytree(tiny_run.data / "interim", tmp_path / "data" / "nova" / "interim")
    shutil.copytree(tiny_run.data / "raw", tmp_path / "data" / "nova" / "raw")
    ctx = step_context(train_normative, tmp_path, TINY)
    ctx.spec = dataclasses.replace(ctx.spec, deps=tuple(d for d in ctx.spec.deps if d != "data/nova/raw/healthy"))
    with pytest.raises(UndeclaredPathError, match=r"nova-train_normative reads the healthy slices in .*raw/healthy"):
        train_normative(ctx)


@pytest.mark.parametrize("key, value", [("threshold_quantile", 1.5), ("calibration_fraction", 1.0), ("size", 8),
                                        ("min_area", 0)])
def test_bad_params_name_the_key(tmp_path, key, value):
    with pytest.raises(ParamsError, match=f"nova.train_normative.{key}: Input should be"):
        step_context(train_normative, tmp_path, {f"nova.train_normative.{key}": value})
