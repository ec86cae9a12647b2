"""Dataset formats: each turns one recipe data source into a list of `Sample`s."""

from __future__ import annotations

from pathlib import Path

from f2tune.config import JsonlSource, ShapesSource
from f2tune.data.formats.jsonl import read_jsonl
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.testing.shapes import shape_samples


def source_name(source: JsonlSource | ShapesSource) -> str:
    """The label a source gets in logs and sample ids."""
    if source.name:
        return source.name
    return Path(source.path).stem if isinstance(source, JsonlSource) else "shapes"


def read_source(source: JsonlSource | ShapesSource, problems: RecordProblems) -> list[Sample]:
    """Read every record of one source; an empty result is an error whatever `on_bad_record` says."""
    if isinstance(source, JsonlSource):
        samples = read_jsonl(Path(source.path), problems, default_prompt=source.prompt)
        where = source.path
    else:
        samples = shape_samples(source.num_samples, source.seed, source.image_size, source_name(source))
        where = source_name(source)
    if not samples:
        dropped = f" ({len(problems.found)} bad record(s) skipped)" if problems.found else ""
        raise DataError(f"{where}: the dataset is empty{dropped}")
    return samples
