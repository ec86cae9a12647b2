"""Detection rows of a Hugging Face dataset: a column of objects, each with a box and a category,
as the Hub's detection datasets hold them (cppe-5, for one).
`format: hf_dataset` with `objects_column`.

Each row becomes an `<OD>` (or `<DENSE_REGION_CAPTION>`) sample whose answer is kept in pixels;
its target text is built after augmentation, as for `structured_jsonl`, so boxes follow flips and
crops. A row's objects come as a dict of lists (`{"bbox": [...], "category": [...]}`, what
`datasets.Sequence` of a dict gives) or as a list of dicts (`datasets.List` of a dict).
Categories are names, or ids of a `ClassLabel` feature, named by it; ids without names have nothing
to train on and are refused. Boxes are in pixels, `xywh` or `xyxy` as the recipe says: Hub datasets
use both, and a wrong guess would train on wrong boxes without an error. Where the dataset has
`width` and `height` columns, every box is checked against them, which also catches a wrong
`box_format` (boxes reaching outside the image). Rows without objects are left out of training
and kept for evaluation, as `coco_detection` does with images without annotations
(`images_without_objects`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from f2tune.config import HfDatasetSource
from f2tune.data.formats.coco import is_int
from f2tune.data.formats.structured import box, check_inside, check_task_fields, image_size_of, numbers
from f2tune.data.sample import RenderedImage, Sample
from f2tune.errors import DataError
from f2tune.tasks.schema import Annotation, Box

RowSample = Callable[[str, RenderedImage, str], list[Sample]]
"""Builds one row's samples from its id, image and origin (none for a row left out)."""


def object_rows(dataset: Any, source: HfDatasetSource) -> Iterator[RowSample]:
    """One sample builder per row of the dataset."""
    names = class_names(dataset.features[source.objects_column], source.label_key)
    for objects, size in zip(dataset[source.objects_column], row_sizes(dataset)):
        yield partial(_object_sample, objects=objects, size=size, names=names, source=source)


def row_sizes(dataset: Any) -> list[tuple[Any, Any] | None]:
    """Each row's (width, height) from the dataset's `width` and `height` columns, which let every
    box be checked against its image without decoding it; None per row where there are none."""
    if "width" in dataset.column_names and "height" in dataset.column_names:
        return list(zip(dataset["width"], dataset["height"]))
    return [None] * len(dataset)


def _object_sample(
    sample_id: str,
    image: RenderedImage,
    origin: str,
    *,
    objects: Any,
    size: tuple[Any, Any] | None,
    names: list[str] | None,
    source: HfDatasetSource,
) -> list[Sample]:
    reference = _reference(objects, names, source, origin)
    if not reference["boxes"] and source.images_without_objects != "keep":
        return []
    declared = None if size is None else image_size_of({"width": size[0], "height": size[1]}, origin)
    if declared is not None:
        width, height = declared
        try:
            check_inside(reference, (width, height), origin)
        except DataError as err:
            raise DataError(
                f"{err} (is box_format {source.box_format} how this dataset writes boxes? "
                "f2tune check-data RECIPE --pictures DIR draws them)"
            ) from None
    task = source.prompt or "<OD>"
    check_task_fields(task, reference, origin)  # a label its parser cannot read back: found now, not mid-epoch
    return [Sample(sample_id, image, "", "", origin, task, reference, declared)]


def class_names(feature: Any, key: str) -> list[str] | None:
    """The names of a `ClassLabel` under the objects feature's `key`, or None when it is not one."""
    while not isinstance(feature, dict) and hasattr(feature, "feature"):  # List / Sequence of a dict
        feature = feature.feature
    return class_label_names(feature.get(key)) if isinstance(feature, dict) else None


def class_label_names(feature: Any) -> list[str] | None:
    """The names of a `ClassLabel` feature, or of a list of them; None for any other feature."""
    while hasattr(feature, "feature"):  # List / Sequence
        feature = feature.feature
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _reference(objects: Any, names: list[str] | None, source: HfDatasetSource, origin: str) -> Annotation:
    boxes, labels = [], []
    for index, (raw_box, raw_label) in enumerate(_pairs(objects, source, origin)):
        where = f"{source.objects_column}[{index}]"
        boxes.append(pixel_box(raw_box, source.box_format, f"{where}.{source.box_key}", origin))
        labels.append(_label(raw_label, names, f"{where}.{source.label_key}", origin))
    return {"boxes": boxes, "labels": labels}


def _pairs(objects: Any, source: HfDatasetSource, origin: str) -> list[tuple[Any, Any]]:
    """(box, category) per object, from a dict of lists or a list of dicts."""
    keys = (source.box_key, source.label_key)
    column = source.objects_column
    if isinstance(objects, dict):
        _require_keys(objects, keys, column, origin)
        boxes, labels = objects[source.box_key], objects[source.label_key]
        if not (isinstance(boxes, list) and isinstance(labels, list) and len(boxes) == len(labels)):
            raise DataError(
                f"{origin}: column '{column}' must hold equally long lists under '{keys[0]}' and '{keys[1]}', "
                f"got {boxes!r} and {labels!r}"
            )
        return list(zip(boxes, labels))
    if isinstance(objects, list) and all(isinstance(o, dict) for o in objects):
        for item in objects:
            _require_keys(item, keys, column, origin)
        return [(item[source.box_key], item[source.label_key]) for item in objects]
    raise DataError(
        f"{origin}: column '{column}' must hold objects (a dict of lists or a list of dicts), got {objects!r}"
    )


def _require_keys(objects: dict[str, Any], keys: tuple[str, str], column: str | None, origin: str) -> None:
    missing = [k for k in keys if k not in objects]
    if missing:
        raise DataError(
            f"{origin}: column '{column}' has no key {', '.join(repr(k) for k in missing)}; its keys are "
            f"{', '.join(map(repr, objects))}: set box_key / label_key on the data source"
        )


def pixel_box(value: Any, box_format: str | None, what: str, origin: str) -> Box:
    """x1, y1, x2, y2 of a box written in `box_format` (`xywh`, or `xyxy` when None)."""
    if box_format == "xywh":
        x, y, w, h = numbers(value, what, origin, 4)
        if w <= 0 or h <= 0:
            raise DataError(f"{origin}: {what} must be x, y, width, height with a positive size, got {value}")
        return [x, y, x + w, y + h]
    return box(value, what, origin)


def _label(value: Any, names: list[str] | None, what: str, origin: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if is_int(value) and names is not None:
        if 0 <= value < len(names):
            return names[value]
        raise DataError(f"{origin}: {what} is class {value}, but the ClassLabel has {len(names)} names")
    if is_int(value):
        raise DataError(
            f"{origin}: {what} is the class id {value}, and the dataset names no classes (the feature is not a "
            "ClassLabel): cast it to datasets.ClassLabel(names=[...]) and save_to_disk, or store the names"
        )
    raise DataError(f"{origin}: {what} must be a category name or a ClassLabel id, got {value!r}")
