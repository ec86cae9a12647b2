"""The base of every recipe section, and constants the sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

TINY_MODEL = "f2tune://tiny"
"""`model.name_or_path` value that builds the tiny random Florence-2 of `f2tune.testing` (offline)."""


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
