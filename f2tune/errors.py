"""The error types f2tune raises on purpose.

Every problem a user can cause (a bad recipe, a broken record, a missing image) surfaces as one of
these, so the CLI can print a one-paragraph message instead of a stack trace.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_RAISED_IN_A_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class F2TuneError(Exception):
    """Base class: a problem the user can fix; the message says what, where and what to do."""

    exit_code = 2
    """The command's exit status when this ends it."""


class RecipeError(F2TuneError):
    """The recipe (YAML or a command-line override) does not match the schema."""


class DataError(F2TuneError):
    """A dataset record, file or image cannot be used."""


class ModelLoadError(F2TuneError):
    """A model or processor cannot be loaded from the given id or folder."""


class RunError(F2TuneError):
    """The run directory is not in the state the command needs (e.g. resume without a checkpoint)."""


SIGNAL_STATUS = {"SIGTERM": 128 + signal.SIGTERM, "Ctrl-C": 128 + signal.SIGINT}
"""The exit status of a command stopped by a signal, as a shell reports a process the signal ended."""


class RunStopped(RunError):
    """A fit, validate or test stopped on request (SIGTERM, Ctrl-C) before its end; the exit status
    is the signal's, as a shell reports a process the signal ended (143, 130)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_few(items: Sequence[str], separator: str = ", ", shown: int = 5) -> str:
    """`a, b, c, d, e and 3 more`: the start of a long list, for a message that names what it found."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return separator.join(items[:shown]) + more


def first_sentence(err: BaseException) -> str:
    """The gist of a library's error for a one-line message: torch's and safetensors' reports of an
    unreadable file run to a paragraph of advice after their first sentence."""
    return str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else type(err).__name__


def user_message(err: F2TuneError) -> str:
    """What to print for `err`. An error raised in a DataLoader worker process (an unreadable image
    found mid-epoch) reaches the training process re-raised by torch with the worker's traceback
    as its message; the user's message is the end of it, after the error's class name."""
    text = str(err)
    if not _RAISED_IN_A_WORKER.match(text):
        return text
    _, found, message = text.rpartition(f"\n{type(err).__module__}.{type(err).__name__}: ")
    return message.rstrip("\n") if found else text


def missing_file(path: Path, what: str) -> str | None:
    """Why `path` is not a file to read as `what` (None when it is one): a folder given where a
    file was meant is said to be one, not reported as not found."""
    if path.is_dir():
        return f"{what} is a folder, not a file: {path}"
    return None if path.is_file() else f"{what} not found: {path}"


@contextmanager
def safetensors_os_errors(target: Path) -> Iterator[None]:
    """Re-raise safetensors' report of a failed write as the `OSError` it reports, naming `target`.

    safetensors writes in Rust and raises a `SafetensorError` ("I/O error: No space left on device
    (os error 28)"), which is no `OSError`: the command line, which turns a full, read-only or
    forbidden disk into one message saying what to do, showed a traceback instead."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:
        found = _RUST_OS_ERROR.search(str(err))
        if found is None:
            raise
        code = int(found[1])
        raise OSError(code, os.strerror(code), str(target)) from err
