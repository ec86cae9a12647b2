"""JSONL: `{"image": "rel/path.jpg", "prompt": "<CAPTION>", "target": "a cat"}` per line.

`prefix`/`suffix` are accepted for `prompt`/`target` (the names other Florence-2 tools use), image
paths are relative to the JSONL file, and every problem is reported as `file:line: what`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from f2tune.data.formats.lines import image_path, read_jsonl_objects, text_field
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.tasks import task_of
from f2tune.tasks.checks import check_text_sample

FIELD_ALIASES: dict[str, tuple[str, ...]] = {"prompt": ("prompt", "prefix"), "target": ("target", "suffix")}

STRUCTURED_FIELDS = frozenset({"task", "boxes", "polygons", "quads", "region", "labels"})
"""Fields of `structured_jsonl` records, which a record of this format lacking its own is likely one of."""


def read_jsonl(path: Path, problems: RecordProblems, default_prompt: str | None = None) -> list[Sample]:
    """All usable records of `path`; bad ones go to `problems` (which raises or counts them)."""
    return read_jsonl_objects(path, problems, partial(_sample, default_prompt=default_prompt))


def _sample(record: dict[str, Any], origin: str, root: Path, *, default_prompt: str | None) -> Sample:
    prompt = _aliased(record, "prompt", origin, default_prompt)
    target = _aliased(record, "target", origin, None)
    try:
        spec = task_of(prompt)
    except DataError as err:
        raise DataError(f"{origin}: {err}") from None
    reason = check_text_sample(spec, prompt, target)
    if reason is not None:
        raise DataError(f"{origin}: {reason}")
    image = image_path(record, origin, root)
    record_id = record.get("id", Path(origin).name)
    return Sample(id=str(record_id), image=image, prompt=prompt, target=target, origin=origin, task=spec.token)


def _aliased(record: dict[str, Any], name: str, origin: str, default: str | None) -> str:
    for key in FIELD_ALIASES[name]:
        if key in record:
            return text_field(record, key, origin)
    if default is not None:
        return default
    names = " or ".join(repr(k) for k in FIELD_ALIASES[name])
    structured = sorted(STRUCTURED_FIELDS & set(record))
    if structured:
        hint = f" (its {', '.join(structured)} are structured_jsonl's fields: set `format: structured_jsonl`)"
    else:
        hint = " (or set `prompt:` on the data source)" if name == "prompt" else ""
    raise DataError(f"{origin}: missing field {names}{hint}")
