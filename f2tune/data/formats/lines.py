"""Shared reading of JSON-object-per-line files: every problem reported as `file:line: what`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError

LineParser = Callable[[dict[str, Any], str, Path], Sample]


def read_jsonl_objects(path: Path, problems: RecordProblems, parse: LineParser) -> list[Sample]:
    """Apply `parse(record, "file:line", folder)` to every JSON object line; bad lines go to `problems`."""
    if not path.is_file():
        raise DataError(f"JSONL file not found: {path}")
    samples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            origin = f"{path}:{number}"
            try:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{origin}: not valid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{origin}: expected a JSON object, got {type(record).__name__}")
                samples.append(parse(record, origin, path.parent))
            except DataError as err:
                problems.report(str(err))
    return samples


def image_path(record: dict[str, Any], origin: str, root: Path) -> Path:
    """The record's `image`, relative to the JSONL file; DataError naming the path when it is missing."""
    image = text_field(record, "image", origin)
    path = Path(image) if Path(image).is_absolute() else root / image
    if not path.is_file():
        raise DataError(f"{origin}: image not found: {path}")
    return path


def text_field(record: dict[str, Any], key: str, origin: str) -> str:
    """A required non-empty string field."""
    if key not in record:
        raise DataError(f"{origin}: missing field '{key}'")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{origin}: field '{key}' must be a non-empty string, got {value!r}")
    return value
