"""Shared reading of JSON-object-per-line files: every problem reported as `file:line: what`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from f2tune.data.images import existing_image
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError, missing_file

LineParser = Callable[[dict[str, Any], str, Path], Sample]

ARRAY_NOT_LINES = (
    "one JSON array over many lines, not JSON Lines (one object per line): "
    "rewrite it so, e.g. `jq -c '.[]' FILE.json > FILE.jsonl`"
)
"""A whole file refused at its first line: each of its lines would otherwise be its own problem."""


def read_jsonl_objects(path: Path, problems: RecordProblems, parse: LineParser) -> list[Sample]:
    """Apply `parse(record, "file:line", folder)` to every JSON object line; bad lines go to `problems`."""
    if problem := missing_file(path, "JSONL file"):
        raise DataError(problem)
    if _opens_an_array(path):
        raise DataError(f"{path}: {ARRAY_NOT_LINES}")
    samples = []
    with path.open("rb") as lines:  # bytes: a line that is not UTF-8 is that line's problem, not the file's
        for number, raw in enumerate(lines, start=1):
            origin = f"{path}:{number}"
            try:
                line = _decoded(raw, number, origin)
                if not line.strip():
                    continue
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


def _opens_an_array(path: Path) -> bool:
    """Whether the first line that is not blank opens a JSON array it does not close."""
    with path.open("rb") as lines:
        first = next((line for line in lines if line.strip()), b"")
    if not first.lstrip(b"\xef\xbb\xbf \t").startswith(b"["):
        return False
    try:
        json.loads(first)
    except ValueError:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
        return True
    return False


def _decoded(raw: bytes, number: int, origin: str) -> str:
    """The line as text (the first may start with a UTF-8 byte order mark, which editors write)."""
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{origin}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
            "JSONL files are UTF-8: re-save it as UTF-8"
        ) from None


def image_path(record: dict[str, Any], origin: str, root: Path) -> Path:
    """The record's `image`, relative to the JSONL file; DataError naming the path when it is missing."""
    image = text_field(record, "image", origin)
    return existing_image(Path(image) if Path(image).is_absolute() else root / image, origin)


def text_field(record: dict[str, Any], key: str, origin: str) -> str:
    """A required non-empty string field."""
    if key not in record:
        raise DataError(f"{origin}: missing field '{key}'")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{origin}: field '{key}' must be a non-empty string, got {value!r}")
    return value
