"""The error types f2tune raises on purpose.

Every problem a user can cause (a bad recipe, a broken record, a missing image) surfaces as one of
these, so the CLI can print a one-paragraph message instead of a stack trace.
"""

from __future__ import annotations


class F2TuneError(Exception):
    """Base class: a problem the user can fix; the message says what, where and what to do."""


class RecipeError(F2TuneError):
    """The recipe (YAML or a command-line override) does not match the schema."""


class DataError(F2TuneError):
    """A dataset record, file or image cannot be used."""


class ModelLoadError(F2TuneError):
    """A model or processor cannot be loaded from the given id or folder."""


class RunError(F2TuneError):
    """The run directory is not in the state the command needs (e.g. resume without a checkpoint)."""
