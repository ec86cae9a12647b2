"""Messages for the person watching the run, printed once (by the global rank 0 process)."""

from __future__ import annotations

import logging
import sys

from lightning.pytorch.utilities import rank_zero_only

logger = logging.getLogger("f2tune")


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the message (it may be swapped, e.g. by
    pytest or a notebook), not the stream that existed when logging was set up."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """Plain `f2tune: message` lines on stderr, beside Lightning's own."""
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("f2tune: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@rank_zero_only
def say(message: str) -> None:
    """Information worth a line: what was loaded, counted, written."""
    logger.info(message)


@rank_zero_only
def warn(message: str) -> None:
    """Something the user should act on; kept rare so that it is read."""
    logger.warning(message)
