"""JSONL: `{"image": "rel/path.jpg", "prompt": "<CAPTION>", "target": "a cat"}` per line.

`prefix`/`suffix` are accepted for `prompt`/`target` (the names other Florence-2 tools use), image
paths are relative to the JSONL file, and every problem is reported as `file:line: what`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.tasks import task_of

FIELD_ALIASES: dict[str, tuple[str, ...]] = {"prompt": ("prompt", "prefix"), "target": ("target", "suffix")}


def read_jsonl(path: Path, problems: RecordProblems, default_prompt: str | None = None) -> list[Sample]:
    """All usable records of `path`; bad ones go to `problems` (which raises or counts them)."""
    if not path.is_file():
        raise DataError(f"JSONL file not found: {path}")
    samples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            origin = f"{path}:{number}"
            try:
                samples.append(_parse_record(line, origin, path.parent, default_prompt))
            except DataError as err:
                problems.report(str(err))
    return samples


def _parse_record(line: str, origin: str, root: Path, default_prompt: str | None) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{origin}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise DataError(f"{origin}: expected a JSON object, got {type(record).__name__}")
    image = _text_field(record, "image", origin)
    prompt = _aliased(record, "prompt", origin, default_prompt)
    target = _aliased(record, "target", origin, None)
    try:
        task = task_of(prompt).token
    except DataError as err:
        raise DataError(f"{origin}: {err}") from None
    image_path = (root / image) if not Path(image).is_absolute() else Path(image)
    if not image_path.is_file():
        raise DataError(f"{origin}: image not found: {image_path}")
    record_id = record.get("id", Path(origin).name)
    return Sample(id=str(record_id), image=image_path, prompt=prompt, target=target, origin=origin, task=task)


def _aliased(record: dict[str, Any], name: str, origin: str, default: str | None) -> str:
    for key in FIELD_ALIASES[name]:
        if key in record:
            return _text_field(record, key, origin)
    if default is not None:
        return default
    names = " or ".join(repr(k) for k in FIELD_ALIASES[name])
    hint = " (or set `prompt:` on the data source)" if name == "prompt" else ""
    raise DataError(f"{origin}: missing field {names}{hint}")


def _text_field(record: dict[str, Any], key: str, origin: str) -> str:
    if key not in record:
        raise DataError(f"{origin}: missing field '{key}'")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{origin}: field '{key}' must be a non-empty string, got {value!r}")
    return value
