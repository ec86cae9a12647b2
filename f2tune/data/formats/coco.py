"""COCO instances JSON (`images`, `annotations`, `categories`) + an image folder -> detection samples.

`format: coco_detection`. One `<OD>` (or `<DENSE_REGION_CAPTION>`) sample per image whose labels are
the category names, or one `<REGION_TO_CATEGORY>` sample per annotation (`region` = its box, `text` =
its category). COCO boxes are `x, y, w, h`; `Annotation` boxes are `x1, y1, x2, y2`, converted here.
`iscrowd` annotations are left out of the targets: they mark a crowd, not one object. A detection
sample keeps them as `crowd_boxes` for COCO mAP, which, as COCO's own evaluation does, ignores the
detections inside them. Images without objects give an evaluation sample with no boxes, on which
any detection is a false one, as in COCO's evaluation, and by default no training sample (nothing
to learn but an empty answer; `images_without_objects: keep` trains on them).

The shared helpers (`read_coco_json`, `index_images`, `instance_box`, `report_all`) also serve the
RefCOCO and captions readers, which use the same file layout.

Problems are named `file:image N` / `file:annotation N` (JSON has no useful line numbers). With
`on_bad_record: error` the whole file is checked first and one error lists the first few offending
ids, so a broken conversion is fixed in one go; with `skip`, each bad record is counted. A bad
annotation drops its whole image from `<OD>`: training on an image with an object missing from the
target would teach the model to miss it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f2tune.config import CocoDetectionSource
from f2tune.data.images import existing_image
from f2tune.data.problems import SHOWN_EXAMPLES, RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError, missing_file
from f2tune.tasks.schema import Annotation, Box

BOX_TOLERANCE = 1.0
"""Pixels a box may exceed its image by (COCO has float rounding at the borders); it is clipped."""


@dataclass(frozen=True)
class CocoImage:
    """One entry of `images`: where the file is and the size the annotations refer to."""

    id: int
    path: Path
    width: int
    height: int


def read_coco_json(path: Path, required: tuple[str, ...], kind: str = "COCO") -> dict[str, Any]:
    """The parsed file; a whole-file problem (missing, not JSON, a top-level key absent) is an error.
    `kind` names the layout expected in those errors (Karpathy's split files share this shape)."""
    if problem := missing_file(path, f"{kind} annotation file"):
        raise DataError(problem)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with keys {', '.join(required)}")
    missing = [key for key in required if key not in data]
    if missing:
        raise DataError(f"{path}: missing top-level key(s) {', '.join(missing)} (is this a {kind} file?)")
    for key in required:
        if not isinstance(data[key], list):
            raise DataError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    return data


def report_all(problems: RecordProblems, messages: list[str], path: Path) -> None:
    """One error naming the first few problems (policy error), or each one counted (skip)."""
    if not messages:
        return
    if problems.policy == "error":
        shown = "\n".join(messages[:SHOWN_EXAMPLES])
        more = f"\n... and {len(messages) - SHOWN_EXAMPLES} more" if len(messages) > SHOWN_EXAMPLES else ""
        problems.report(f"{path}: {len(messages)} bad record(s), the first:\n{shown}{more}")
    for message in messages:
        problems.report(message)


def index_images(data: dict[str, Any], path: Path, image_root: Path, messages: list[str]) -> dict[int, CocoImage]:
    """`images` by id; entries without an int id, a file name or a positive size go to `messages`."""
    images: dict[int, CocoImage] = {}
    for position, entry in enumerate(data["images"]):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        where = f"{path}:image {image_id}" if is_int(image_id) else f"{path}:images[{position}]"
        if not is_int(image_id):
            messages.append(f"{where}: missing or non-integer 'id'")
            continue
        if image_id in images:
            messages.append(f"{where}: image id listed twice")
            continue
        file_name, width, height = entry.get("file_name"), entry.get("width"), entry.get("height")
        if not isinstance(file_name, str) or not file_name:
            messages.append(f"{where}: missing 'file_name'")
        elif not (is_number(width) and is_number(height)):
            messages.append(f"{where}: missing or non-numeric 'width'/'height'")
        elif width <= 0 or height <= 0:
            messages.append(f"{where}: width and height must be positive, got {width}x{height}")
        else:
            images[image_id] = CocoImage(image_id, image_root / file_name, int(width), int(height))
    return images


def index_categories(data: dict[str, Any], path: Path, messages: list[str]) -> dict[int, str]:
    """Category names by id."""
    categories: dict[int, str] = {}
    for position, entry in enumerate(data["categories"]):
        if not isinstance(entry, dict) or not is_int(entry.get("id")):
            messages.append(f"{path}:categories[{position}]: missing or non-integer 'id'")
        elif entry["id"] in categories:
            messages.append(f"{path}:category {entry['id']}: category id listed twice")
        elif not isinstance(entry.get("name"), str) or not entry["name"].strip():
            messages.append(f"{path}:category {entry['id']}: missing 'name'")
        else:
            categories[entry["id"]] = entry["name"].strip()
    return categories


def annotation_where(path: Path, position: int, ann: Any) -> str:
    """`file:annotation N` (or its position when it has no usable id)."""
    ann_id = ann.get("id") if isinstance(ann, dict) else None
    return f"{path}:annotation {ann_id}" if is_int(ann_id) else f"{path}:annotations[{position}]"


def instance_box(ann: Any, images: dict[int, CocoImage], categories: dict[int, str] | None, where: str) -> Box:
    """The annotation's box as x1, y1, x2, y2 (clipped to its image), or DataError saying what is wrong."""
    if not isinstance(ann, dict):
        raise DataError(f"{where}: expected an object, got {type(ann).__name__}")
    missing = [
        k for k in ("id", "image_id", "bbox") + (("category_id",) if categories is not None else ()) if k not in ann
    ]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in ("id", "image_id") + (("category_id",) if categories is not None else ()):
        require_int(ann, key, where)
    image = images.get(ann["image_id"])
    if image is None:
        raise DataError(f"{where}: image_id {ann['image_id']!r} is not listed in 'images'")
    if categories is not None and ann["category_id"] not in categories:
        raise DataError(f"{where}: category_id {ann['category_id']!r} is not in 'categories'")
    if ann.get("iscrowd", 0) not in (0, 1):  # a string "0" would read as a crowd, and be left out
        raise DataError(f"{where}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        raise DataError(f"{where}: 'bbox' must be 4 numbers x, y, width, height, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: bbox width and height must be positive, got {w:g}x{h:g}")
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > image.width + tol or y + h > image.height + tol:
        raise DataError(f"{where}: bbox {bbox} lies outside its image {image.id} ({image.width}x{image.height})")
    width, height = float(image.width), float(image.height)
    clipped = [min(max(x, 0.0), width), min(max(y, 0.0), height), min(x + w, width), min(y + h, height)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:  # within the tolerance, but past an edge
        raise DataError(f"{where}: bbox {bbox} has no area inside its image {image.id} ({image.width}x{image.height})")
    return clipped


def read_coco_detection(source: CocoDetectionSource, problems: RecordProblems) -> list[Sample]:
    """Samples of one COCO instances file; bad records go to `problems`."""
    path = Path(source.path)
    data = read_coco_json(path, ("images", "annotations", "categories"))
    messages: list[str] = []
    images = index_images(data, path, Path(source.image_root), messages)
    categories = index_categories(data, path, messages)
    per_image: dict[int, list[tuple[int, Box, str, float]]] = {image_id: [] for image_id in images}
    crowds_of: dict[int, list[tuple[int, Box, str, float]]] = {image_id: [] for image_id in images}
    broken: set[int] = set()
    for position, ann in enumerate(data["annotations"]):
        where = annotation_where(path, position, ann)
        try:
            box = instance_box(ann, images, categories, where)
        except DataError as err:
            messages.append(str(err))
            if isinstance(ann, dict) and is_int(ann.get("image_id")) and ann["image_id"] in images:
                broken.add(ann["image_id"])
            continue
        kept = crowds_of if ann.get("iscrowd") else per_image
        kept[ann["image_id"]].append((ann["id"], box, categories[ann["category_id"]], object_area(ann)))
    samples: list[Sample] = []
    for image_id, objects in per_image.items():
        if image_id in broken or not (objects or source.images_without_objects == "keep"):
            continue
        image = images[image_id]
        where = f"{path}:image {image_id}"
        try:
            image_path = existing_image(image.path, where)
        except DataError as err:
            messages.append(str(err))
            continue
        if source.task == "<REGION_TO_CATEGORY>":
            for ann_id, box, name, _ in objects:
                reference: Annotation = {"region": box, "text": name}
                samples.append(
                    _sample(
                        f"{image_id}-{ann_id}", image, image_path, f"{path}:annotation {ann_id}", source.task, reference
                    )
                )
        else:
            crowds = crowds_of[image_id]
            reference = {"boxes": [b for _, b, _, _ in objects], "labels": [n for _, _, n, _ in objects]}
            if crowds:
                reference["crowd_boxes"] = [b for _, b, _, _ in crowds]
                reference["crowd_labels"] = [n for _, _, n, _ in crowds]
            if any(area for *_, area in objects + crowds):
                reference["areas"] = [area for *_, area in objects]
                reference["crowd_areas"] = [area for *_, area in crowds]
            samples.append(_sample(str(image_id), image, image_path, where, source.task, reference))
    report_all(problems, messages, path)
    if images and not samples and not messages:
        crowds = sum(map(len, crowds_of.values()))
        raise DataError(
            f"{path}: the dataset is empty: none of its {len(images)} image(s) has an object that is not "
            f"a crowd ({len(data['annotations'])} annotation(s), {crowds} of them crowds, which are left out)"
        )
    return samples


def object_area(ann: dict[str, Any]) -> float:
    """COCO's `area` of an annotation's object (its segment's pixels), which COCO's evaluation sorts
    objects into small, medium and large by; 0 where it has none (its box's area is used then)."""
    area = ann.get("area")
    return float(area) if is_number(area) and area > 0 else 0.0


def _sample(sample_id: str, image: CocoImage, path: Path, origin: str, task: str, reference: Annotation) -> Sample:
    return Sample(sample_id, path, "", "", origin, task, reference, declared_size=(image.width, image.height))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_int(record: dict[str, Any], key: str, where: str) -> int:
    """`record[key]` when it is an integer id; otherwise DataError (a list id would break dict lookups)."""
    value = record[key]
    if not is_int(value):
        raise DataError(f"{where}: {key!r} must be an integer, got {value!r}")
    return value


def is_number(value: Any) -> bool:
    """A finite int or float: no bool, and no integer beyond a float's range (`10**400`), which
    `math.isfinite` cannot even convert."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
