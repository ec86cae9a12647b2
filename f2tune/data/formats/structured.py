"""JSONL of structured answers in pixels. `format: structured_jsonl`.

One object per line, e.g. `{"image": "a.jpg", "task": "<OD>", "boxes": [[x1, y1, x2, y2]], "labels":
["cat"]}`: the user's own data for any Florence-2 task without writing `<loc_N>` text by hand (the
target is built from it after augmentation, so boxes follow flips and crops). Keys are the
`Annotation` fields: `boxes` (x1, y1, x2, y2), `labels`, `polygons` (a list of flat x, y lists),
`quads` (8 numbers each), `text`, `answers`, and the inputs `query` / `region`; optional `width` /
`height` (pixels) let coordinates be checked against the image without opening it (else they are
checked when it is opened, `SampleDataset` and `f2tune check-data`). Unknown keys
are errors, so that a typo (`bbox`) does not silently drop an answer.

Each record is checked for its fields' shapes and for what its task needs (its prompt and target
built once at a nominal size), so that a bad record is named before training starts. `numbers`
also serves the OCR reader.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from f2tune.config import StructuredJsonlSource
from f2tune.data.formats.coco import BOX_TOLERANCE, is_number
from f2tune.data.formats.lines import image_path, read_jsonl_objects, text_field
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.data.sampler import NOMINAL_IMAGE_SIZE
from f2tune.errors import DataError
from f2tune.tasks import build_prompt, format_target
from f2tune.tasks.schema import Annotation
from f2tune.tasks.tokens import TASKS_WITH_INPUT, TASKS_WITHOUT_INPUT

KEYS = {"id", "image", "task", "width", "height", "boxes", "labels", "polygons", "quads"}
KEYS |= {"text", "answers", "query", "region"}
ANSWER_KEYS = ("text", "answers", "boxes", "polygons", "quads")


def numbers(value: Any, what: str, origin: str, count: int | None = None) -> list[float]:
    """A list of finite numbers (exactly `count` of them when given)."""
    if not (isinstance(value, list) and all(is_number(v) for v in value)):
        raise DataError(f"{origin}: {what} must be a list of numbers, got {value!r}")
    if count is not None and len(value) != count:
        raise DataError(f"{origin}: {what} must have {count} numbers, got {len(value)}")
    return [float(v) for v in value]


def box(value: Any, what: str, origin: str) -> list[float]:
    """x1, y1, x2, y2 with x2 > x1 and y2 > y1."""
    x1, y1, x2, y2 = numbers(value, what, origin, 4)
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{origin}: {what} must be x1, y1, x2, y2 with x2 > x1 and y2 > y1, got {value}")
    return [x1, y1, x2, y2]


def read_structured(source: StructuredJsonlSource, problems: RecordProblems) -> list[Sample]:
    """Samples of one structured JSONL file."""
    return read_jsonl_objects(Path(source.path), problems, _parse)


def _parse(record: dict[str, Any], origin: str, root: Path) -> Sample:
    unknown = sorted(set(record) - KEYS)
    if unknown:
        raise DataError(f"{origin}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    if "task" not in record:
        raise DataError(f"{origin}: missing field 'task' (a Florence-2 task token such as <OD>)")
    task = record["task"]
    if task != "" and task not in TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT:
        known = ", ".join(TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT)
        raise DataError(f"{origin}: 'task' must be a Florence-2 task token ({known}) or \"\", got {task!r}")
    image = image_path(record, origin, root)
    reference = annotation_of(record, origin)
    if not any(key in reference for key in ANSWER_KEYS):
        raise DataError(f"{origin}: no answer: give one of {', '.join(ANSWER_KEYS)}")
    # without the size, the far edges are checked when the image is opened (`SampleDataset`, check-data)
    size = image_size_of(record, origin)
    check_inside(reference, size or (math.inf, math.inf), origin)
    check_task_fields(task, reference, origin)
    record_id = record.get("id", Path(origin).name)
    return Sample(str(record_id), image, "", "", origin, task, reference, size)


def annotation_of(record: dict[str, Any], origin: str) -> Annotation:
    """The record's annotation fields, each checked for its shape (boxes x1 < x2, polygons of 3+ points...)."""
    reference: Annotation = {}
    for key in ("text", "query"):
        if key in record:
            reference[key] = text_field(record, key, origin)
    if "region" in record:
        reference["region"] = box(record["region"], "region", origin)
    if "answers" in record:
        reference["answers"] = _strings(record["answers"], "answers", origin)
    if "boxes" in record:
        reference["boxes"] = [box(b, f"boxes[{i}]", origin) for i, b in enumerate(_list(record, "boxes", origin))]
    if "quads" in record:
        reference["quads"] = [
            numbers(q, f"quads[{i}]", origin, 8) for i, q in enumerate(_list(record, "quads", origin))
        ]
    if "polygons" in record:
        polygons = _list(record, "polygons", origin)
        if polygons and all(is_number(v) for v in polygons):
            raise DataError(f"{origin}: 'polygons' is a list of polygons; wrap a single flat x, y list in []")
        reference["polygons"] = [_polygon(p, f"polygons[{i}]", origin) for i, p in enumerate(polygons)]
    if "labels" in record:
        labels = _strings(record["labels"], "labels", origin)
        shaped = "boxes" if "boxes" in reference else "quads" if "quads" in reference else None
        if shaped is None:
            raise DataError(f"{origin}: 'labels' name boxes or quads, but the record has neither")
        if len(labels) != len(reference[shaped]):
            raise DataError(f"{origin}: {len(labels)} labels for {len(reference[shaped])} {shaped}")
        reference["labels"] = labels
    return reference


def _list(record: dict[str, Any], key: str, origin: str) -> list[Any]:
    value = record[key]
    if not isinstance(value, list):
        raise DataError(f"{origin}: '{key}' must be a list, got {value!r}")
    return value


def _strings(value: Any, what: str, origin: str) -> list[str]:
    if not (isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)):
        raise DataError(f"{origin}: '{what}' must be a list of non-empty strings, got {value!r}")
    return list(value)


def _polygon(value: Any, what: str, origin: str) -> list[float]:
    points = numbers(value, what, origin)
    if len(points) < 6 or len(points) % 2:
        raise DataError(f"{origin}: {what} must be flat x, y pairs, at least 3 points, got {len(points)} numbers")
    return points


def check_task_fields(task: str, reference: Annotation, origin: str) -> None:
    """Refuse an annotation that lacks what `task` reads or writes (an `<OD>` record without labels),
    found when the data is read rather than when a batch is made: the prompt and target are built
    once at a nominal image size."""
    try:
        build_prompt(task, reference, NOMINAL_IMAGE_SIZE)
        format_target(task, reference, NOMINAL_IMAGE_SIZE)
    except DataError as err:
        raise DataError(f"{origin}: {err}") from None


def image_size_of(record: dict[str, Any], origin: str) -> tuple[float, float] | None:
    """The record's `width` and `height` (pixels), when it gives them: boxes can then be checked
    against the image without opening it."""
    if "width" not in record and "height" not in record:
        return None
    width, height = record.get("width"), record.get("height")
    if not (is_number(width) and is_number(height) and width > 0 and height > 0):
        raise DataError(f"{origin}: 'width' and 'height' must both be positive numbers, got {width!r}, {height!r}")
    return float(width), float(height)


OPENED_IMAGE_HINT = " (the image as opened and turned upright: are they for another size or orientation of it?)"
"""Said of coordinates past the image file itself, where the annotation's own size, if any, held them."""


def check_opened(sample: Sample, size: tuple[int, int]) -> None:
    """Refuse a structured sample whose opened image (`size`, turned upright) does not hold its
    coordinates: an image of another size than its annotation states (the coordinates are in the
    stated frame, and where they fit inside both, an image resized after annotating or a photo its
    EXIF orientation turns, they trained silently in the wrong place), or coordinates past its edges."""
    assert sample.reference is not None, "a structured sample"
    _check_stated_size(sample, size)
    check_inside(sample.reference, size, sample.origin, OPENED_IMAGE_HINT)


def _check_stated_size(sample: Sample, size: tuple[int, int]) -> None:
    if sample.declared_size is None:
        return
    width, height = sample.declared_size
    if abs(width - size[0]) <= BOX_TOLERANCE and abs(height - size[1]) <= BOX_TOLERANCE:
        return
    turned = abs(width - size[1]) <= BOX_TOLERANCE and abs(height - size[0]) <= BOX_TOLERANCE
    why = (
        "its EXIF orientation turns it: the annotations are for the image as stored, unturned"
        if turned
        else "were the images resized after annotating, or does the record name another image?"
    )
    raise DataError(
        f"{sample.origin}: the image is {size[0]}x{size[1]} as opened, but the annotation says {width:g}x{height:g} "
        f"({why}); its coordinates would land in the wrong place: give the size and coordinates of the image as "
        "it opens, or an image of the stated size"
    )


def check_inside(reference: Annotation, size: tuple[float, float], origin: str, hint: str = "") -> None:
    """Refuse coordinates outside the image (beyond rounding): a sign of the wrong box format or
    size. Florence-2's location tokens would clamp them into boxes on the image's edge, silently.
    `size` may be infinite, to refuse negative coordinates where the size is not known yet."""
    width, height = size
    shapes = [("region", reference["region"])] if "region" in reference else []
    for key in ("boxes", "quads", "polygons"):
        shapes += [(f"{key}[{i}]", s) for i, s in enumerate(reference.get(key, []))]
    for what, coords in shapes:
        xs, ys = coords[0::2], coords[1::2]
        if min(xs + ys) < -BOX_TOLERANCE:
            raise DataError(f"{origin}: {what} lies outside the image (negative coordinates): {coords}{hint}")
        if max(xs) > width + BOX_TOLERANCE or max(ys) > height + BOX_TOLERANCE:
            raise DataError(f"{origin}: {what} lies outside the {width:g}x{height:g} image: {coords}{hint}")
