"""The base of every recipe section, and constants the sections share."""

from __future__ import annotations

import os
from typing import Any, get_args

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

    @model_validator(mode="before")
    @classmethod
    def _no_yes_for_a_number(cls, data: Any) -> Any:
        """A yes/no where a number goes is refused at its key: pydantic reads `true` as 1, so
        `trainer.max_steps=true` trained one step, and `trainer.devices=[true]` on GPU 1, without a
        word. Given as the text YAML wrote, it fails the field's own number check."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: _bools_as_text(value)
            if key in fields and _takes(fields[key].annotation, (int, float), (bool, str))
            else value
            for key, value in data.items()
        }


def _bools_as_text(value: Any) -> Any:
    """`value` with each yes/no, also inside its lists and mapping values, as the text YAML read."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return [_bools_as_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _bools_as_text(item) for key, item in value.items()}
    return value


def _takes(annotation: Any, kinds: tuple[type, ...], unless: tuple[type, ...]) -> bool:
    """Whether a field's type admits one of `kinds` and none of `unless` (through unions and `Annotated`)."""
    found = set()
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type):
            found.add(current)
        stack.extend(get_args(current))
    return bool(found & set(kinds)) and not found & set(unless)
