"""Reading and writing stages' entries in dvc.lock, as DVC keys them.

A stage of `dvc.yaml` is keyed by its name (a `foreach` item by `<name>@<item>`, as DVC names it);
a stage of a nested `sub/dvc.yaml` (`sub/dvc.yaml:<name>`) lives in `sub/dvc.lock`. Stages of
`.dvc` files have no entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _lock_location(repo_root: Path, stage: str) -> tuple[Path, str] | None:
    """dvc.lock path and key of a pipeline stage; None for `.dvc` file stages (no lock entry)."""
    if stage.endswith(".dvc"):
        return None
    if ":" in stage:
        dvcfile, name = stage.rsplit(":", 1)
        return repo_root / Path(dvcfile).parent / "dvc.lock", name
    return repo_root / "dvc.lock", stage


def read_lock_entry(repo_root: Path, stage: str) -> dict[str, Any] | None:
    """The stage's entry in dvc.lock as plain data, or None when it has none."""
    import yaml

    location = _lock_location(Path(repo_root), stage)
    if location is None or not location[0].exists():
        return None
    path, key = location
    data = yaml.safe_load(path.read_text()) or {}
    entry = (data.get("stages") or {}).get(key)
    return json.loads(json.dumps(entry)) if entry is not None else None


@contextmanager
def _dvc_repo_lock(repo_root: Path) -> Iterator[None]:
    """DVC's own repository lock (.dvc/tmp/lock), waiting for it as `dvc --wait-for-lock` does."""
    from dvc.lock import make_lock

    tmp_dir = Path(repo_root) / ".dvc" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    lock = make_lock(str(tmp_dir / "lock"), tmp_dir=str(tmp_dir), wait=True)
    with lock:
        yield


def write_lock_entries(repo_root: Path, entries: Mapping[str, dict[str, Any] | None]) -> list[str]:
    """Set the given stages' dvc.lock entries (None removes one), holding DVC's lock.

    Only entries that differ are written; returns the stages whose entries changed.
    """
    from dvc.utils.serialize import modify_yaml

    repo_root = Path(repo_root)
    changed = [stage for stage, entry in entries.items() if read_lock_entry(repo_root, stage) != entry]
    if not changed:
        return []
    by_file: dict[Path, dict[str, dict[str, Any] | None]] = {}
    for stage in changed:
        location = _lock_location(repo_root, stage)
        if location is not None:
            by_file.setdefault(location[0], {})[location[1]] = entries[stage]
    with _dvc_repo_lock(repo_root):
        for path, updates in by_file.items():
            with modify_yaml(str(path)) as data:
                if not data:
                    data["schema"] = "2.0"
                stages = data.setdefault("stages", {})
                for key, entry in updates.items():
                    if entry is None:
                        stages.pop(key, None)
                    else:
                        stages[key] = entry
    return changed
