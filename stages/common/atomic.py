"""Outputs that appear whole or not at all.

Everything is written under a temporary sibling name and renamed into place only when the
writer finished without an exception; a crash (even SIGKILL) leaves at most a ``.tmp-*``
sibling, never a half-written output under the real name. Leftover temporaries from a killed
run are removed the next time the same output is written.

Inside :func:`rollback_on_failure` (the stage runner wraps every step in it) a replaced output is
first kept aside as ``.tmp-<name>.<pid>.rollback``; if the step fails, every output it wrote is
removed and the kept versions are put back, so a failed run changes nothing it wrote through
this module. A backup a killed run left is put back by :func:`sweep_stale_temporaries`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

_TMP_MARK = ".tmp-"
_ROLLBACK_SUFFIX = ".rollback"
_journal: list[tuple[Path, Path | None]] | None = None  # (output, its previous version) while a rollback is open
_kept_folders: tuple[Path, ...] = ()  # what a failed block keeps (checkpoints to resume from, logs)


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f"{_TMP_MARK}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries an interrupted writer of ``path`` left behind."""
    if not path.parent.exists():
        return
    for stale in path.parent.glob(f"{_TMP_MARK}{path.name}.*"):
        if not stale.name.endswith(_ROLLBACK_SUFFIX):  # a backup is restored or dropped by its own run or the sweep
            _remove(stale)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_alive(temporary: Path) -> bool:
    """Whether the process named in ``.tmp-<name>.<pid>.<hex>`` still runs (unknown names count as alive)."""
    try:
        pid = int(temporary.name.rsplit(".", 2)[-2])
    except (IndexError, ValueError):
        return True
    return process_alive(pid)


def sweep_stale_temporaries(folders: Iterator[Path] | list[Path]) -> list[Path]:
    """Delete the ``.tmp-*`` siblings in ``folders`` whose writer is gone; returns what was removed.

    A stage calls this at its start for its study's output folders, so a temporary a killed run
    left is gone even when DVC served the rerun of that stage from its run cache.
    """
    removed = []
    for folder in folders:
        if folder.is_dir():
            for stale in sorted(folder.glob(f"{_TMP_MARK}*")):
                if not _writer_alive(stale):
                    if stale.name.endswith(_ROLLBACK_SUFFIX):
                        _restore(stale)
                    else:
                        _remove(stale)
                    removed.append(stale)
    return removed


def _restore(backup: Path) -> None:
    """Put a killed run's kept previous version back in place of what that run wrote."""
    target = backup.with_name(backup.name[len(_TMP_MARK):].rsplit(".", 2)[0])
    _remove(target)
    os.replace(backup, target)


def _replace(temporary: Path, final: Path) -> None:
    """Move ``temporary`` to ``final``, keeping the previous ``final`` aside while a rollback is open."""
    if (_journal is not None and all(final != written for written, _ in _journal)
            and not any(final.absolute().is_relative_to(folder) for folder in _kept_folders)):
        backup = None
        if final.exists() or final.is_symlink():
            backup = final.with_name(f"{_TMP_MARK}{final.name}.{os.getpid()}{_ROLLBACK_SUFFIX}")
            _remove(backup)
            os.replace(final, backup)
        _journal.append((final, backup))
    elif temporary.is_dir() and final.exists():
        _remove(final)
    os.replace(temporary, final)


@contextlib.contextmanager
def rollback_on_failure(keep: tuple[Path, ...] = ()) -> Iterator[None]:
    """Outputs written through this module in the block stay only if the block succeeds.

    On an exception each output the block wrote is removed and its previous version restored,
    newest first; files under the folders in ``keep`` (a checkpoint to resume from, a log) stay.
    Nested blocks join the outermost one.
    """
    global _journal, _kept_folders
    if _journal is not None:
        yield
        return
    _journal, _kept_folders = [], tuple(Path(folder).absolute() for folder in keep)
    try:
        yield
    except BaseException:
        journal, _journal, _kept_folders = _journal, None, ()
        for final, backup in reversed(journal):
            _remove(final)
            if backup is not None:
                os.replace(backup, final)
        raise
    journal, _journal, _kept_folders = _journal, None, ()
    for _, backup in journal:
        if backup is not None:
            _remove(backup)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; move it to ``path`` when the block succeeds.

    With ``directory=True`` the temporary is an empty folder and the whole folder is swapped in.
    On an exception the temporary is deleted and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    temporary = _temporary_sibling(final)
    if directory:
        temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise
    if not directory and not temporary.exists():
        raise FileNotFoundError(f"the writer of {final} produced no file at {temporary}")
    _replace(temporary, final)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Shorthand for ``atomic_path(path, directory=True)``."""
    with atomic_path(path, directory=True) as temporary:
        yield temporary


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike[str], payload: Any) -> Path:
    return write_text(path, yaml.safe_dump(payload, sort_keys=False))


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
