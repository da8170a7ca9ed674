"""Running DVC commands for a stage: output streamed line by line, retried while DVC reports a held lock."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

OUTPUT_TAIL_LINES = 40
LOCK_RETRY_MAX_DELAY_SECONDS = 10.0
# DVC's messages when its repository lock or a stage's read/write lock is held by another process.
LOCK_ERROR_MARKERS = ("Unable to acquire lock", "LockError", "is busy, it is being blocked by")


class StageFailedError(RuntimeError):
    """A DVC command for a stage exited non-zero; the message carries its stderr tail."""

    def __init__(self, stage: str, command: str, returncode: int, stderr_tail: str) -> None:
        self.stage = stage
        self.command = command
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        super().__init__(
            f"stage {stage!r} failed: `{command}` exited with code {returncode}\n"
            f"--- last lines of its stderr ---\n{stderr_tail}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stage, self.command, self.returncode, self.stderr_tail))


def _dvc_command(*args: str) -> list[str]:
    # --wait-for-lock: wait for DVC's repository lock instead of failing (it is re-taken after
    # the stage command runs; failing there would throw away a finished stage).
    return [sys.executable, "-m", "dvc", "--wait-for-lock", *args]


def stage_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, with this interpreter first on PATH."""
    env = dict(os.environ)
    env.update(extra)
    # `python` in a stage cmd must be the interpreter running the flow, activated or not.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_streaming(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], log: Callable[[str], None]
) -> tuple[int, str, str]:
    """Run `command`, passing each output line to `log`; returns (code, stdout tail, stderr tail)."""
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
    )
    tails: dict[str, deque[str]] = {name: deque(maxlen=OUTPUT_TAIL_LINES) for name in ("stdout", "stderr")}

    def pump(stream: Any, tail: deque[str]) -> None:
        for raw_line in stream:
            # progress bars rewrite their line with carriage returns; keep the final state
            line = raw_line.rstrip("\n").split("\r")[-1].rstrip()
            if line:
                tail.append(line)
                log(line)

    threads = [
        threading.Thread(target=pump, args=(process.stdout, tails["stdout"]), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, tails["stderr"]), daemon=True),
    ]
    for thread in threads:
        thread.start()
    returncode = process.wait()
    for thread in threads:
        thread.join()
    return returncode, "\n".join(tails["stdout"]), "\n".join(tails["stderr"])


def is_lock_error(output: str) -> bool:
    """True when DVC failed because another DVC process holds a lock."""
    return any(
        line.startswith("ERROR") and any(marker in line for marker in LOCK_ERROR_MARKERS)
        for line in output.splitlines()
    )


def run_dvc(
    stage: str,
    args: Sequence[str],
    repo_root: Path,
    env: Mapping[str, str],
    lock_retries: int,
    log: Callable[[str], None],
) -> str:
    """Run a DVC command for `stage`, retrying with backoff while DVC reports a held lock.

    Returns the command's stdout tail; raises StageFailedError on any other failure.
    """
    command = _dvc_command(*args)
    printable = "dvc " + " ".join(args)
    for attempt in range(lock_retries + 1):
        returncode, stdout_tail, stderr_tail = run_streaming(command, repo_root, env, log)
        if returncode == 0:
            return stdout_tail
        if attempt < lock_retries and is_lock_error(stderr_tail + "\n" + stdout_tail):
            delay = min(0.5 * 2**attempt, LOCK_RETRY_MAX_DELAY_SECONDS) * random.uniform(0.5, 1.5)
            log(f"DVC lock held by another process; retry {attempt + 1}/{lock_retries} in {delay:.1f} s")
            time.sleep(delay)
            continue
        raise StageFailedError(stage, printable, returncode, stderr_tail or stdout_tail)
    raise AssertionError("unreachable: the loop returns or raises")
