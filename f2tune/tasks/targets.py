"""Target text builders: a structured `Annotation` -> the exact string Florence-2 writes for a task.

The formats are those the pretrained model generates (and `Florence2Processor.post_process_generation`
parses), so fine-tuning continues the model's own output language instead of teaching a new one:

- boxes: `label<x1><y1><x2><y2>`, consecutive boxes of one label share it (`wheel<4 locs><4 locs>`)
- region proposals: the location tokens alone
- polygons: the points of each part, parts of one object joined by `<sep>`
- OCR with regions: `text<8 locs>` per line
- `<REGION_TO_CATEGORY>` / `<REGION_TO_DESCRIPTION>`: the text followed by the input region's 4 locs,
  as the released model answers (`car<loc_52><loc_332><loc_932><loc_774>`)

Every missing field or impossible value raises `DataError` naming the task and the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from f2tune.errors import DataError
from f2tune.locs import ImageSize, box_to_text, polygon_to_text, quad_to_text
from f2tune.tasks.schema import Annotation


def field(annotation: Annotation, name: str, task: str) -> object:
    """`annotation[name]`, or a `DataError` that says which task needs it."""
    if name not in annotation:
        present = ", ".join(sorted(annotation)) or "none"
        raise DataError(f"{task} needs the annotation field {name!r} (fields given: {present})")
    return annotation[name]


def text_field(annotation: Annotation, name: str, task: str) -> str:
    """A non-empty string field, stripped."""
    value = field(annotation, name, task)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{task}: annotation field {name!r} must be non-empty text, got {value!r}")
    return value.strip()


def _label(label: object, task: str, angle_ok: bool = False) -> str:
    """A label as it can stand before location tokens.

    The processor reads a label as the text before the first `<` (`[^<]+`) on one line, so a label
    with `<` or a newline would be cut or lost when parsed; an empty one would merge its boxes into
    the previous label's. OCR lines are read up to the first 8 locs, so only `<loc_` is unsafe there.
    """
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{task}: labels must be non-empty text, got {label!r}")
    bad = "<loc_" if angle_ok else "<"
    if bad in label or "\n" in label:
        raise DataError(f"{task}: label {label!r} contains {bad!r} or a newline, which its parser cannot read back")
    return label.strip()


def _sequence(annotation: Annotation, name: str, task: str) -> list:
    value = field(annotation, name, task)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise DataError(f"{task}: annotation field {name!r} must be a list, got {type(value).__name__}")
    return list(value)


def _paired(annotation: Annotation, shapes: str, task: str) -> tuple[list, list]:
    items, labels = _sequence(annotation, shapes, task), _sequence(annotation, "labels", task)
    if len(items) != len(labels):
        raise DataError(f"{task}: {len(items)} {shapes} but {len(labels)} labels; they must pair up one to one")
    return items, labels


def _numbers(values: object, what: str, task: str) -> list[float]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise DataError(f"{task}: each {what} must be a list of numbers, got {values!r}")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"{task}: {what} {values!r} must contain only numbers") from None
    if not all(math.isfinite(v) for v in numbers):
        raise DataError(f"{task}: {what} {values!r} contains NaN or infinity")
    return numbers


def _located(kind: str, value: object, image_size: ImageSize, task: str) -> str:
    """Location tokens for one box / polygon / quad; the codec's own error gains the task name."""
    encode = {"box": box_to_text, "polygon": polygon_to_text, "quad": quad_to_text}[kind]
    numbers = _numbers(value, kind, task)  # its message names the task already
    try:
        return encode(numbers, image_size)
    except DataError as err:
        raise DataError(f"{task}: {err}") from None


def text_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """Captions, `<REGION_TO_OCR>`, free-text prompts: the answer text itself (not empty)."""
    return text_field(annotation, "text", task)


def ocr_text_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """`<OCR>`: the image's text, empty for an image without any (the model learns to answer
    nothing, as `<OCR_WITH_REGION>` does for an image without lines)."""
    value = field(annotation, "text", task)
    if not isinstance(value, str):
        raise DataError(f"{task}: annotation field 'text' must be text, got {value!r}")
    return value.strip()


def region_tokens(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """The 4 location tokens of the annotation's input `region` (region prompts and their answers)."""
    return _located("box", field(annotation, "region", task), image_size, task)


def region_text_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """The answer text followed by the region it describes, as Florence-2 writes it."""
    return text_field(annotation, "text", task) + region_tokens(annotation, image_size, task)


def boxes_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """`label<4 locs>...`, one label for a run of consecutive boxes with the same label."""
    boxes, labels = _paired(annotation, "boxes", task)
    parts, previous = [], None
    for box, label in zip(boxes, labels):
        label = _label(label, task)
        parts.append(("" if label == previous else label) + _located("box", box, image_size, task))
        previous = label
    return "".join(parts)


def proposals_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """Only location tokens, four per box."""
    return "".join(_located("box", box, image_size, task) for box in _sequence(annotation, "boxes", task))


def polygons_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """One object's polygon parts, joined by `<sep>` (what the processor's polygon parser splits on)."""
    polygons = _sequence(annotation, "polygons", task)
    if not polygons:
        raise DataError(f"{task}: 'polygons' is empty; a segmentation target needs at least one polygon")
    return "<sep>".join(_located("polygon", polygon, image_size, task) for polygon in polygons)


def quads_target(annotation: Annotation, image_size: ImageSize, task: str) -> str:
    """`text<8 locs>` per OCR line."""
    quads, labels = _paired(annotation, "quads", task)
    return "".join(
        _label(label, task, angle_ok=True) + _located("quad", quad, image_size, task)
        for quad, label in zip(quads, labels)
    )
