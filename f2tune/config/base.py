"""The base of every recipe section, and constants the sections share."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

TINY_MODEL = "f2tune://tiny"
"""`model.name_or_path` value that builds the tiny random Florence-2 of `f2tune.testing` (offline)."""

PATH_KEYS = frozenset(
    {"path", "refs", "image_root", "output_dir", "image_feature_cache_dir", "dir", "name_or_path", "adapter"}
)
"""Keys whose values may be local paths: a leading `~` is the user's home there, as in a shell."""


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, values are checked on assignment, and
    no number is infinite or NaN (YAML's `.inf` passed `gt=0`: a source's weight of `.inf` crashed
    in torch's sampling, an `lr` of `.inf` trained NaN)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _home_expanded(cls, data: Any) -> Any:
        """`~/runs` in YAML (which no shell expands) would otherwise be a folder named `~` in the
        working directory; a Hub id never starts with `~`."""
        if not isinstance(data, dict):
            return data
        return {
            key: os.path.expanduser(value) if key in PATH_KEYS and isinstance(value, str) else value
            for key, value in data.items()
        }
