"""Messages for the person watching the run, printed once (by the global rank 0 process)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch.utilities import rank_zero_only

logger = logging.getLogger("f2tune")

LIGHTNING_INFO = "lightning.pytorch.utilities.rank_zero"
"""The logger of Lightning's `rank_zero_info` messages."""


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the message (it may be swapped, e.g. by
    pytest or a notebook), not the stream that existed when logging was set up."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _not_an_advert(record: logging.LogRecord) -> bool:
    """Lightning (2.6) logs a "💡 Tip" to install its cloud logger at every Trainer's start: not
    about the run, so not shown beside what is."""
    return not record.getMessage().startswith("💡 Tip")


def setup_logging() -> None:
    """Plain `f2tune: message` lines on stderr, beside Lightning's own (less its adverts)."""
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("f2tune: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logging.getLogger(LIGHTNING_INFO).addFilter(_not_an_advert)


@rank_zero_only
def say(message: str) -> None:
    """Information worth a line: what was loaded, counted, written."""
    logger.info(message)


@rank_zero_only
def warn(message: str) -> None:
    """Something the user should act on; kept rare so that it is read."""
    logger.warning(message)


def on_rank_zero() -> bool:
    """Whether this process is the global rank 0 of its run (or its only process)."""
    return rank_zero_only.rank == 0


@contextmanager
def no_save_bars() -> Iterator[None]:
    """transformers' "Writing model shards" progress bar off inside the block: `save_pretrained`
    draws one per model folder written (one file for Florence-2-base), which f2tune follows with
    its own line saying where the folder went. Progress bars for downloads are back after it."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    if shown:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
