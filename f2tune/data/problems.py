"""Bad records: stop at the first (`on_bad_record: error`) or drop and count them (`skip`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from f2tune.errors import DataError

SHOWN_EXAMPLES = 5
SKIP_HINT = "(`f2tune check-data` lists every such record at once; data.on_bad_record: skip drops them)"
"""Said after the first bad record stops a run: where to find the others, and how to drop them."""


@dataclass
class RecordProblems:
    """Collects what was wrong with dropped records so that one summary can name the first few."""

    policy: Literal["error", "skip"] = "error"
    found: list[str] = field(default_factory=list)

    def report(self, message: str) -> None:
        """Raise for `error`; remember for `skip`. `message` already names file:line and the problem."""
        if self.policy == "error":
            raise DataError(f"{message}\n{SKIP_HINT}")
        self.found.append(message)

    def summary(self, what: str) -> str | None:
        """One paragraph for the log, or None when nothing was dropped."""
        if not self.found:
            return None
        shown = "\n".join(f"  - {m}" for m in self.found[:SHOWN_EXAMPLES])
        more = f"\n  ... and {len(self.found) - SHOWN_EXAMPLES} more" if len(self.found) > SHOWN_EXAMPLES else ""
        return f"{what}: skipped {len(self.found)} bad record(s):\n{shown}{more}"
