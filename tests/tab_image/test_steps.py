"""tab_image pretrain (outputs, resuming) and the claims logic of evaluate, in-process."""
import numpy as np
import pandas as pd
import pytest
import torch

from stages.tab_image.dataset import load_task
from stages.tab_image.evaluate import degradation, paper_claims
from stages.tab_image.ingest import ingest
from stages.tab_image.models import load_pretrained
from stages.tab_image.pretrain import learning_rate_factor, pretrain, pretrain_task
from tests.helpers import run_step, step_context
from tests.tab_image.tiny import TINY

ONE_TASK = {**TINY, "tab_image.pretrain.epochs": 2}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("tab_image")
    run_step(ingest, root, TINY)
    return root


def test_pretrain_saves_a_loadable_model_per_task_and_a_loss_table(ingested):
    ctx, metrics = run_step(pretrain, ingested, ONE_TASK, item="tip_no_mtr")
    data = ingested / "data" / "tab_image"
    method, model = load_pretrained(data / "models/tip_no_mtr/cars.pt", torch.device("cpu"))
    assert method == "tip_no_mtr" and model.config.field_lengths == (2, 2, 4, 1, 1, 1, 1, 1, 1)
    loss = pd.read_csv(data / "metrics/pretrain_tip_no_mtr_loss.csv")
    assert list(loss.columns) == ["epoch", "task", "loss", "itc", "itm"] and len(loss) == 4
    assert np.allclose(loss.loss, (loss.itc + loss.itm) / 2)
    assert metrics["pairs_per_second"] > 0 and not any((data / ".scratch").rglob("*.pt"))


def test_an_interrupted_pretraining_resumes_from_its_checkpoint(ingested, capsys):
    task = load_task(ingested / "data/tab_image/interim/ingest", "cardiac")
    first = step_context(pretrain, ingested, {**ONE_TASK, "tab_image.pretrain.epochs": 1}, item="tip")
    _, history_one, _ = pretrain_task(first, "tip", "cardiac", task, torch.device("cpu"))  # leaves its checkpoint
    second = step_context(pretrain, ingested, ONE_TASK, item="tip")
    _, history_two, _ = pretrain_task(second, "tip", "cardiac", task, torch.device("cpu"))
    assert "resuming tip/cardiac" in capsys.readouterr().out
    assert len(history_two) == 2 and history_two[0] == history_one[0]


def test_learning_rate_warms_up_then_decays_by_cosine():
    assert [round(learning_rate_factor(e, 2, 6), 4) for e in range(6)] == [0.3333, 0.6667, 1.0, 0.8536, 0.5, 0.1464]


def frames(tip_best: bool, tip_gentle: bool):
    fractions = pd.DataFrame([{"task": "cars", "method": m, "mode": "finetune", "fraction": 1.0, "seed": 0,
                               "value": (0.9 if m == "tip" else 0.8) if tip_best else (0.7 if m == "tip" else 0.8)}
                              for m in ("tip", "mmcl", "tip_no_itm", "tip_no_mtr", "concat")])
    rows = []
    for strategy in ("random_values", "random_features", "most_important", "least_important"):
        for method in ("tip", "mmcl", "tip_no_itm", "tip_no_mtr", "concat"):
            for rate in (0.0, 0.5):
                loss = (0.05 if method == "tip" else 0.3 if strategy == "most_important" else 0.2) if tip_gentle else 0.3 * (method == "tip")
                rows.append({"task": "cars", "method": method, "strategy": strategy, "rate": rate, "seed": 0,
                             "value": 0.9 - loss * rate / 0.5})
    return fractions, pd.DataFrame(rows)


def test_claims_hold_only_when_the_numbers_say_so():
    fractions, missing = frames(tip_best=True, tip_gentle=True)
    drops = degradation(missing)
    assert drops.loc[(drops.method == "tip") & (drops.strategy == "random_values"), "drop"].item() == pytest.approx(0.05)
    verdicts = {c.id: c.holds for c in paper_claims(fractions, drops, seeds=1)}
    assert verdicts == {"tip_best_at_full_data": True, "tip_degrades_more_gently": True,
                        "tip_advantage_largest_for_most_important": True}
    fractions, missing = frames(tip_best=False, tip_gentle=False)
    verdicts = {c.id: c.holds for c in paper_claims(fractions, degradation(missing), seeds=1)}
    assert not any(verdicts.values())
