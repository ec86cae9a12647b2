"""Structured rows of a Hugging Face dataset: columns holding a task's annotation fields in pixels,
as the Hub's grounding, referring-expression and segmentation datasets hold them.
`format: hf_dataset` with `annotation_columns` (field -> column) and the task as `prompt`.

Each row becomes a sample like a `structured_jsonl` record (the same field checks; the target text
built after augmentation, so boxes and polygons follow flips and crops). What Hub datasets write
differently from those records is accepted here:
- one box, quad or polygon where the field holds a list of them (`bbox: [x, y, w, h]`), and boxes
  and regions in `box_format` (`xywh` or `xyxy`);
- text lines boxed rather than quadded (`<OCR_WITH_REGION>`): boxes of 4 numbers under `quads`,
  in `box_format`, as their four corners;
- a segmentation as COCO writes it: a flat polygon, a list of them, or an RLE dict (traced);
- one label as a string, and labels as `ClassLabel` ids (named by the feature);
- a list of queries (an object's several referring expressions): one sample per query, as the
  `refcoco` format makes them. A query task's boxes without a labels column are named by the query,
  as Florence-2 answers `<OPEN_VOCABULARY_DETECTION>` and grounding prompts;
- boxes grouped by label (a phrase of a grounded caption and every box it names: a list of lists
  of boxes, one list per label), each label given to its group's boxes; a phrase with no box is
  left out, as Florence-2's grounding answers name only what they box;
- a field inside a struct column, or inside each item of a list of structs, named by a dotted path
  (`entities.phrase`, `entities.boxes`): Hub datasets keep annotations as records.

Every row's prompt and target are built once when read (with a nominal image size), so a field the
task needs and the mapping lacks is reported by row before training starts. Where the dataset has
`width` and `height` columns, every coordinate is checked against them.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from f2tune.config import HfDatasetSource
from f2tune.data.formats.coco import is_number
from f2tune.data.formats.hf_columns import column_values, feature_at
from f2tune.data.formats.hf_objects import RowSample, class_label_names, pixel_box, row_sizes
from f2tune.data.formats.refcoco import segmentation_polygons
from f2tune.data.formats.structured import (
    ANSWER_KEYS,
    annotation_of,
    check_inside,
    check_task_fields,
    image_size_of,
)
from f2tune.data.sample import RenderedImage, Sample
from f2tune.errors import DataError
from f2tune.tasks import TASKS


def structured_rows(dataset: Any, source: HfDatasetSource) -> Iterator[RowSample]:
    """One sample builder per row of the dataset (its column paths checked by `check_column_paths`)."""
    columns = source.annotation_columns or {}
    values = {field: column_values(dataset, column) for field, column in columns.items()}
    if "labels" in columns:
        names = class_label_names(feature_at(dataset, columns["labels"]))
        values["labels"] = [_named(labels, names) for labels in values["labels"]]
    for index, size in enumerate(row_sizes(dataset)):
        row = {field: column[index] for field, column in values.items()}
        yield partial(_row_samples, row=row, size=size, source=source)


def _named(labels: Any, names: list[str] | None) -> Any:
    """A row's ClassLabel ids as their names (ids out of range are left for the checks to name)."""
    if names is None:
        return labels
    one = not isinstance(labels, list)
    named = [names[i] if isinstance(i, int) and 0 <= i < len(names) else i for i in ([labels] if one else labels)]
    return named[0] if one else named


def _row_samples(
    sample_id: str,
    image: RenderedImage,
    origin: str,
    *,
    row: dict[str, Any],
    size: tuple[Any, Any] | None,
    source: HfDatasetSource,
) -> list[Sample]:
    """The row's sample, or one per query where the query column holds a list."""
    task = TASKS[source.prompt or ""]
    columns = source.annotation_columns or {}
    record = {field: _as_record_value(field, value, columns[field], source, origin) for field, value in row.items()}
    if _grouped(record.get("boxes")):
        record = _ungrouped(record, columns, origin)
    queries = record.pop("query", None)
    if not isinstance(queries, list):
        return [_sample(sample_id, image, origin, record, queries, size, task.token)]
    return [
        _sample(f"{sample_id}-{number}", image, f"{origin} query {number}", record, query, size, task.token)
        for number, query in enumerate(queries)
    ]


def _sample(
    sample_id: str,
    image: RenderedImage,
    origin: str,
    record: dict[str, Any],
    query: str | None,
    size: tuple[Any, Any] | None,
    task: str,
) -> Sample:
    """The row's sample for one of its queries (or for its only one, or none), checked as a
    `structured_jsonl` record is."""
    record = dict(record)
    if query is not None:
        record["query"] = query
        if TASKS[task].input == "query" and "boxes" in record and "labels" not in record:
            record["labels"] = [query] * len(record["boxes"])
    reference = annotation_of(record, origin)
    if not any(key in reference for key in ANSWER_KEYS):
        raise DataError(f"{origin}: no answer: map one of {', '.join(ANSWER_KEYS)} in annotation_columns")
    declared = None if size is None else image_size_of({"width": size[0], "height": size[1]}, origin)
    if declared is not None:
        check_inside(reference, declared, origin)
    check_task_fields(task, reference, origin)
    return Sample(sample_id, image, "", "", origin, task, reference, declared)


def _as_record_value(field: str, value: Any, column: str, source: HfDatasetSource, origin: str) -> Any:
    """A column's value as a `structured_jsonl` record holds that field."""
    what = f"column '{column}'"
    if value is None:
        raise DataError(f"{origin}: {what} ({field}) holds no value in this row")
    if field == "boxes":
        boxes = [value] if _flat(value, 4) else value
        if not isinstance(boxes, list):
            raise DataError(f"{origin}: {what} must hold a box or a list of boxes, got {value!r}")
        if _grouped(boxes):
            return [_pixel_boxes(group, source, f"{what}[{i}]", origin) for i, group in enumerate(boxes)]
        return _pixel_boxes(boxes, source, what, origin)
    if field == "region":
        return pixel_box(value, source.box_format, what, origin)
    if field == "quads":
        quads = [value] if _flat(value, 8) or _flat(value, 4) else value
        if not isinstance(quads, list):
            raise DataError(f"{origin}: {what} must hold a quad or a list of quads, got {value!r}")
        return [_box_quad(q, source, f"{what}[{i}]", origin) if _flat(q, 4) else q for i, q in enumerate(quads)]
    if field == "polygons":
        if isinstance(value, list) and value and all(is_number(v) for v in value):
            value = [value]  # one polygon, as flat x, y numbers
        return segmentation_polygons(value, f"{origin}: {what}")
    if field in ("labels", "answers") and isinstance(value, str):
        return [value]
    if field == "query" and isinstance(value, list):
        if not value or not all(isinstance(q, str) and q.strip() for q in value):
            raise DataError(f"{origin}: {what} must hold a query or a list of non-empty queries, got {value!r}")
    return value


def _pixel_boxes(boxes: list, source: HfDatasetSource, what: str, origin: str) -> list[list[float]]:
    """A list of boxes in `box_format` as x1, y1, x2, y2, each named by its index where it is bad."""
    if not isinstance(boxes, list):
        raise DataError(f"{origin}: {what} must hold a list of boxes, got {boxes!r}")
    return [pixel_box(b, source.box_format, f"{what}[{i}]", origin) for i, b in enumerate(boxes)]


def _grouped(boxes: Any) -> bool:
    """Whether `boxes` holds lists of boxes (one per label) rather than boxes."""
    return (
        isinstance(boxes, list)
        and bool(boxes)
        and all(isinstance(group, list) and all(isinstance(b, list) for b in group) for group in boxes)
    )


def _ungrouped(record: dict[str, Any], columns: dict[str, str], origin: str) -> dict[str, Any]:
    """The record with its boxes in one list, each group's label repeated for the group's boxes."""
    groups = record["boxes"]
    record = {**record, "boxes": [b for group in groups for b in group]}
    if "labels" not in record:
        return record
    labels = record["labels"]
    if not isinstance(labels, list) or len(labels) != len(groups):
        raise DataError(
            f"{origin}: column '{columns['boxes']}' holds {len(groups)} groups of boxes (one per label), but "
            f"column '{columns['labels']}' holds {len(labels) if isinstance(labels, list) else 'no list of'} label(s)"
        )
    record["labels"] = [label for label, group in zip(labels, groups) for _ in group]
    return record


def _box_quad(value: list, source: HfDatasetSource, what: str, origin: str) -> list[float]:
    """The four corners, clockwise from top-left, of a text line's box (OCR datasets that box
    their words rather than give quads)."""
    if source.box_format is None:
        raise DataError(
            f"{origin}: {what} is a box of 4 numbers, not a quad of 8: set box_format (xywh or xyxy) on the "
            "data source to read it as one"
        )
    x1, y1, x2, y2 = pixel_box(value, source.box_format, what, origin)
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def _flat(value: Any, count: int) -> bool:
    """Whether `value` is one shape of `count` numbers rather than a list of shapes."""
    return isinstance(value, list) and len(value) == count and all(is_number(v) for v in value)
