"""Seeding, device choice, progress bars and a local Ray kept on loopback."""
from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")


_pending_torch_seed: int | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) from one integer.

    Importing torch costs 1-2 s on 2 cores, a fixed cost no stage without torch should pay: torch
    is seeded here only when the step module already imported it, else by ``configure_torch``,
    which every torch stage calls (through ``ctx.torch_device``) before its first random op.
    """
    global _pending_torch_seed
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
        _pending_torch_seed = None
    else:
        _pending_torch_seed = seed


def configure_torch(num_threads: int) -> None:
    """Threads from params (never from OMP_NUM_THREADS, which Ray sets per task) and deterministic kernels.

    The same params then train the same bytes under ``dvc repro`` and under a flow on Ray.
    """
    global _pending_torch_seed
    import torch

    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    if _pending_torch_seed is not None:
        torch.manual_seed(_pending_torch_seed)
        _pending_torch_seed = None
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def keep_local_ray_on_loopback() -> None:
    """Make the Ray that this process starts next (``ray.init()`` without an address) listen on 127.0.0.1 only.

    Ray turns a node address of 127.0.0.1 into the machine's outward address and binds its GCS,
    raylet, workers and agents there or on every interface; ``_node_ip_address="127.0.0.1"`` does not
    stop it. Only its single-machine mode (the constant behind ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``)
    keeps every server on loopback. It is set in this process only, so a stage that joins a cluster
    from a process this one started still reaches it.
    """
    import ray

    # prefect_ray imports ray lazily: load the package whole before reaching into it, or a
    # submodule import leaves it half-initialised.
    ray.__version__  # noqa: B018
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


def choose_device(preference: str = "auto"):
    """``cuda`` when asked for or when present under ``auto``; else ``cpu``.

    Asking for ``cuda`` on a machine without one is an error, not a silent fallback.
    """
    import torch

    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("common.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    if preference == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def progress(iterable: Iterable[Item], description: str, total: int | None = None) -> Iterator[Item]:
    """A tqdm bar on stderr; in logs (no TTY) it updates at most every 10 s."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    yield from tqdm(
        iterable,
        desc=description,
        total=total,
        file=sys.stderr,
        mininterval=0.2 if interactive else 10.0,
        dynamic_ncols=interactive,
        disable=os.environ.get("MEDREPRO_NO_PROGRESS") == "1",
    )


# Packages MONAI's start-up imports for models and handlers no study uses (TransChex's BERT,
# the MLflow handler): 3-4 s of every stage that imports MONAI on 2 cores.
MONAI_UNUSED_EXTRAS = ("transformers", "mlflow")


def import_monai() -> None:
    """Import MONAI once without the optional extras its package start-up would load.

    ``monai/__init__`` imports every submodule, and each optional dependency it finds installed.
    Marking the unused ones absent for that one import makes MONAI's ``optional_import`` treat
    them as missing; they are importable again as soon as it returns. Call it before the first
    ``from monai ... import``; a no-op when MONAI or the extras are already loaded.
    """
    if "monai" in sys.modules:
        return
    blocked = [name for name in MONAI_UNUSED_EXTRAS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import monai  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]

