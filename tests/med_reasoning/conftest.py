"""The whole med_reasoning study run once in-process on tiny params, shared by the step tests."""
import pytest

from stages.med_reasoning.difficulty import difficulty
from stages.med_reasoning.evaluate import evaluate
from stages.med_reasoning.ingest import ingest
from stages.med_reasoning.prepare_model import prepare_model
from stages.med_reasoning.report import report
from stages.med_reasoning.train import train
from stages.med_reasoning.variants import VARIANTS
from tests.helpers import run_step
from tests.med_reasoning.tiny import TINY


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """The whole study in-process on tiny params; the train@mixed context and metrics kept for inspection."""
    root = tmp_path_factory.mktemp("med_reasoning")
    run_step(ingest, root, TINY)
    prepared = run_step(prepare_model, root, TINY)
    difficulty_run = run_step(difficulty, root, TINY)
    trained = {variant: run_step(train, root, TINY, item=variant) for variant in VARIANTS}
    evaluated = run_step(evaluate, root, TINY)
    run_step(report, root, TINY)
    return root / "data" / "med_reasoning", trained, evaluated, prepared, difficulty_run
