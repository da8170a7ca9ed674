"""One writer per stage: a lock beside DVC's, so killing only `dvc` and rerunning cannot overlap two writers."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stages.common.pipeline import PipelineError


class StageBusyError(PipelineError):
    """Another process is running the same stage of the same project."""


def lock_path(root: Path, stage: str) -> Path:
    """Outside the project (no file DVC or git could see), keyed by the project's resolved path."""
    project = hashlib.md5(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "medrepro-stage-locks" / project / f"{stage}.lock"


@contextlib.contextmanager
def stage_lock(root: Path, stage: str) -> Iterator[Path]:
    """Hold the stage's lock for the block; refuse at once, naming the holder, when another process has it."""
    path = lock_path(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StageBusyError(f"stage {stage} is already running (pid {holder}, lock {path}); "
                                 "wait for it to end or stop it, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
