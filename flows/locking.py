"""The flow lock: one flow run at a time per repository, so dvc.lock is never written by two.

Kept free of Prefect/Ray imports so that it is cheap to use from anywhere.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

FLOW_LOCK_FILE = "medrepro-flow.lock"
FLOW_LOCK_OWNER_FILE = "medrepro-flow.owner.json"


class FlowLockedError(RuntimeError):
    """Another flow run holds this repository's flow lock."""


_held: set[Path] = set()  # flow locks this process holds: taking one again is a no-op


@contextmanager
def flow_lock(repo_root: Path, timeout: float) -> Iterator[Path]:
    """Exclusive lock on the repository for a flow run (.dvc/tmp/medrepro-flow.lock).

    A second flow run waits up to `timeout` seconds, then raises FlowLockedError naming the
    lock file and the holder's pid. The OS releases the lock when its holder exits. Within one
    process the lock is reentrant (`python -m flows run` takes it before starting any server,
    the flow takes it again).
    """
    from filelock import FileLock, Timeout

    tmp_dir = Path(repo_root).resolve() / ".dvc" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    lock_path = tmp_dir / FLOW_LOCK_FILE
    if lock_path in _held:
        yield lock_path
        return
    owner_path = tmp_dir / FLOW_LOCK_OWNER_FILE
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        holder = "unknown"
        try:
            owner = json.loads(owner_path.read_text())
            holder = f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
        except (OSError, ValueError, KeyError):
            pass
        raise FlowLockedError(
            f"another flow run holds {lock_path} ({holder}); waited {timeout:g} s. Wait for it to "
            f"finish (the lock is freed when that process exits) or raise "
            f"orchestration.flow_lock_timeout_seconds"
        ) from None
    try:
        owner_path.write_text(
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
            )
        )
        _held.add(lock_path)
        yield lock_path
    finally:
        _held.discard(lock_path)
        owner_path.unlink(missing_ok=True)
        lock.release()
