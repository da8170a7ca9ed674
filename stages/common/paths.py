"""Where things live: the repository root, each study's data folders, and safe path resolution."""
from __future__ import annotations

import os
from pathlib import Path


class UnsafePathError(ValueError):
    """A path read from a manifest or params points outside the folder it must stay in."""


def repo_root() -> Path:
    """The repository root: ``DVC_ROOT`` when DVC runs the stage, else the nearest folder with ``dvc.yaml``."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def study_dir(study: str, root: Path | None = None) -> Path:
    """``data/<study>`` under the repository root."""
    return (root or repo_root()) / "data" / study


def resolve_inside(base: Path, relative: str | os.PathLike[str], what: str = "path") -> Path:
    """Resolve ``relative`` against ``base`` and refuse anything that escapes ``base``.

    Absolute paths are accepted only when they already lie inside ``base``.
    """
    base_resolved = Path(base).resolve()
    candidate = (base_resolved / Path(relative)).resolve()
    if candidate != base_resolved and base_resolved not in candidate.parents:
        raise UnsafePathError(f"{what} {str(relative)!r} resolves to {candidate}, outside {base_resolved}")
    return candidate


def portable_path(path: Path, repo: Path) -> str:
    """``path`` relative to the repository when inside it (so outputs hash the same in every clone), else absolute."""
    path = Path(path)
    return path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path)


def from_portable(text: str | os.PathLike[str], repo: Path) -> Path:
    """The inverse of :func:`portable_path`: relative paths are taken from the repository root."""
    path = Path(text)
    return path if path.is_absolute() else repo / path
