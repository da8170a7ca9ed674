"""Bad input: fatal by default, or set aside in a saved quarantine list with ``on_bad_input: skip``."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stages.common.atomic import write_json
from stages.common.io import FormatError
from stages.common.paths import UnsafePathError

log = logging.getLogger(__name__)


class BadInputError(ValueError):
    """One input item (file, row, case) is unusable; the message names it and the problem."""


BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (BadInputError, FormatError, UnsafePathError)


@dataclass
class GuardOutcome:
    ok: bool = True
    problem: str | None = None


@dataclass
class Quarantine:
    """Collects items that failed with a bad-input error when the policy is ``skip``."""

    policy: str = "fatal"
    entries: list[dict[str, str]] = field(default_factory=list)

    @contextlib.contextmanager
    def guard(self, item: str) -> Iterator[GuardOutcome]:
        """Run a block for one item; under ``skip`` a bad-input error quarantines the item.

        Under ``fatal`` the error propagates. Other exceptions (bugs) always propagate.
        """
        outcome = GuardOutcome()
        try:
            yield outcome
        except BAD_INPUT_ERRORS as error:
            if self.policy != "skip":
                raise
            outcome.ok, outcome.problem = False, str(error)
            self.entries.append({"item": item, "problem": str(error)})
            log.warning("quarantined %s: %s", item, error)

    def stop_when_everything_quarantined(self, kept: int, what: str, log_folder: Path) -> None:
        """Refuse to go on with nothing left: save the list to ``log_folder`` and say where it is."""
        if kept > 0 or not self.entries:
            return
        saved = self.save(log_folder / "quarantine.json")
        first = self.entries[0]
        raise BadInputError(f"every {what} was quarantined ({len(self.entries)} of {len(self.entries)}), nothing is left "
                            f"to ingest; the list is in {saved} (first: {first['item']}: {first['problem']})")

    @property
    def items(self) -> list[str]:
        return [entry["item"] for entry in self.entries]

    def save(self, path: Path) -> Path:
        """Write the list (possibly empty) so the quarantine is always inspectable."""
        return write_json(path, {"policy": self.policy, "count": len(self.entries), "entries": self.entries})
