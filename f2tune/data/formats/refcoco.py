"""RefCOCO / RefCOCO+ / RefCOCOg: referring expressions over COCO objects. `format: refcoco`.

Needs the COCO instances JSON the refs point into (`path`, e.g. refcoco/instances.json), the
train2014 image folder (`image_root`) and the refs. The refs ship as a pickle (`refs(unc).p`), and
unpickling runs arbitrary code, so f2tune reads them only as JSON. Convert once, on a file you trust:

    import json, pickle
    with open("refcoco/refs(unc).p", "rb") as f:
        refs = pickle.load(f)  # a list of plain dicts: ref_id, ann_id, image_id, split, sentences, ...
    with open("refcoco/refs_unc.json", "w") as f:
        json.dump(refs, f)

One sample per sentence (`query` = the sentence), for the refs of `split` (all when unset):
- `<OPEN_VOCABULARY_DETECTION>` and `<CAPTION_TO_PHRASE_GROUNDING>`: `boxes` = [the object's box],
  `labels` = [the sentence].
- `<REFERRING_EXPRESSION_SEGMENTATION>`: `polygons` = the object's COCO segmentation. Polygons are
  used as they are; RLE masks (dict with `counts`/`size`) are decoded with pycocotools and turned
  into one polygon per 8-connected part by tracing its outer boundary through pixel centres
  (Moore-neighbour tracing, collinear points dropped). Holes are lost (Florence-2 polygons cannot
  express them) and outlines sit half a pixel inside, under one location bin at 1000 bins.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from f2tune.config import RefCocoSource
from f2tune.data.formats.coco import (
    annotation_where,
    existing_image,
    index_images,
    instance_box,
    is_int,
    is_number,
    read_coco_json,
    report_all,
    require_int,
)
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError, missing_file
from f2tune.tasks.schema import Annotation, Polygon

REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")
SEGMENTATION = "<REFERRING_EXPRESSION_SEGMENTATION>"


def read_refcoco(source: RefCocoSource, problems: RecordProblems) -> list[Sample]:
    """Samples of the refs of one split; bad refs and annotations go to `problems`."""
    path, refs_path = Path(source.path), Path(source.refs)
    data = read_coco_json(path, ("images", "annotations"))
    refs = _read_refs(refs_path)
    messages: list[str] = []
    images = index_images(data, path, Path(source.image_root), messages)
    annotations = {ann["id"]: ann for ann in data["annotations"] if isinstance(ann, dict) and is_int(ann.get("id"))}
    samples: list[Sample] = []
    for position, ref in enumerate(refs):
        if not isinstance(ref, dict) or (source.split is not None and ref.get("split") != source.split):
            if not isinstance(ref, dict):
                messages.append(f"{refs_path}:refs[{position}]: expected an object, got {type(ref).__name__}")
            continue
        try:
            samples.extend(_ref_samples(ref, position, refs_path, path, annotations, images, source.task))
        except DataError as err:
            messages.append(str(err))
    report_all(problems, messages, refs_path)
    return samples


def _read_refs(path: Path) -> list[Any]:
    if problem := missing_file(path, "refs file"):
        hint = " (convert the refs(*).p pickle once, see f2tune.data.formats.refcoco)" if path.suffix == ".p" else ""
        raise DataError(f"{problem}{hint}")
    if path.suffix == ".p":
        raise DataError(f"{path}: refs must be JSON, not a pickle; convert it once (see f2tune.data.formats.refcoco)")
    try:
        refs = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); refs are a JSON list of objects") from None
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a JSON list of refs, got {type(refs).__name__}")
    return refs


def _ref_samples(
    ref: dict[str, Any], position: int, refs_path: Path, path: Path, annotations: dict, images: dict, task: str
) -> list[Sample]:
    ref_id = ref.get("ref_id", f"#{position}")
    where = f"{refs_path}:ref {ref_id}"
    missing = [key for key in REF_KEYS if key not in ref]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    ann = annotations.get(require_int(ref, "ann_id", where))
    if ann is None:
        raise DataError(f"{where}: ann_id {ref['ann_id']!r} is not in {path}")
    if ann.get("image_id") != ref["image_id"]:
        raise DataError(f"{where}: image_id {ref['image_id']!r} differs from its annotation's {ann.get('image_id')!r}")
    box = instance_box(ann, images, None, annotation_where(path, 0, ann))
    image = images[ann["image_id"]]
    image_path = existing_image(image.path, where)
    sentences = ref["sentences"]
    if not isinstance(sentences, list) or not sentences:
        raise DataError(f"{where}: 'sentences' must be a non-empty list")
    texts = [s.get("sent") if isinstance(s, dict) else None for s in sentences]
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise DataError(f"{where}: every sentence needs a non-empty 'sent'")
    polygons = []
    if task == SEGMENTATION:
        where_segment = f"{path}:annotation {ann['id']}"
        polygons = segmentation_polygons(ann.get("segmentation"), where_segment, (image.width, image.height))
    samples = []
    for index, text in enumerate(texts):
        sentence = text.strip()
        reference: Annotation = {"query": sentence}
        if task == SEGMENTATION:
            reference["polygons"] = [list(p) for p in polygons]  # augmentation may edit in place
        else:
            reference.update(boxes=[list(box)], labels=[sentence])
        samples.append(
            Sample(
                id=f"{ref_id}-{index}",
                image=image_path,
                prompt="",
                target="",
                origin=f"{where} sentence {index}",
                task=task,
                reference=reference,
                declared_size=(image.width, image.height),
            )
        )
    return samples


def segmentation_polygons(segmentation: Any, where: str, image_size: tuple[int, int] | None = None) -> list[Polygon]:
    """COCO segmentation -> flat polygons: lists as they are, RLE dicts traced. An RLE mask's own
    `size` (height, width) must be its image's (`image_size`: width, height, where known): traced
    at another size, its outline would land elsewhere on the image."""
    if isinstance(segmentation, list) and segmentation:
        for part in segmentation:
            if not (isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0 and all(map(is_number, part))):
                raise DataError(f"{where}: segmentation polygons need an even count (>= 6) of numbers")
        return [[float(v) for v in part] for part in segmentation]
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            raise DataError(f"{where}: RLE segmentation needs pycocotools (pip install pycocotools)") from None
        rle, size = segmentation, segmentation["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) and v > 0 for v in size)):
            raise DataError(f"{where}: an RLE segmentation's 'size' is [height, width] in pixels, got {size!r}")
        if image_size is not None and (size[1], size[0]) != tuple(image_size):
            raise DataError(
                f"{where}: the RLE segmentation is {size[1]}x{size[0]} (size: [height, width]), its image "
                f"{image_size[0]}x{image_size[1]}: the mask is for another size of the image"
            )
        try:
            if isinstance(rle["counts"], list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(rle, *size)
            mask = mask_utils.decode(rle)
        except (ValueError, TypeError, OverflowError) as err:
            raise DataError(
                f"{where}: the RLE segmentation cannot be decoded ({err}): 'counts' is COCO's compressed string or "
                "a list of run lengths that add up to height x width"
            ) from None
        polygons = mask_polygons(mask)
        if not polygons:
            raise DataError(f"{where}: RLE segmentation has no region of 3 or more boundary points")
        return polygons
    raise DataError(f"{where}: missing segmentation (a list of polygons or an RLE dict)")


# Clockwise in image coordinates (y down), starting east: (dy, dx).
_STEPS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def mask_polygons(mask: np.ndarray) -> list[Polygon]:
    """One outer-boundary polygon (pixel centres, x, y flat) per 8-connected part of a binary mask."""
    mask = np.asarray(mask).astype(bool)
    if mask.ndim == 3:
        mask = mask[..., 0]
    seen = np.zeros_like(mask)
    polygons: list[Polygon] = []
    for y, x in zip(*np.nonzero(mask)):  # raster order: each part is met first at its top-left pixel
        if seen[y, x]:
            continue
        _mark_part(mask, seen, (int(y), int(x)))
        points = _simplify(_trace(mask, (int(y), int(x))))
        if len(points) >= 3:
            polygons.append([c for py, px in points for c in (px + 0.5, py + 0.5)])
    return polygons


def _mark_part(mask: np.ndarray, seen: np.ndarray, start: tuple[int, int]) -> None:
    height, width = mask.shape
    seen[start] = True
    queue = deque([start])
    while queue:
        y, x = queue.popleft()
        for dy, dx in _STEPS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                queue.append((ny, nx))


def _trace(mask: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """Moore-neighbour tracing from the top-left pixel (its west neighbour is background)."""
    height, width = mask.shape

    def inside(p: tuple[int, int]) -> bool:
        return 0 <= p[0] < height and 0 <= p[1] < width and bool(mask[p])

    contour, current, back = [start], start, 4  # back: direction from current to the last background
    for _ in range(4 * mask.size + 8):
        for turn in range(1, 9):
            direction = (back + turn) % 8
            candidate = (current[0] + _STEPS[direction][0], current[1] + _STEPS[direction][1])
            if inside(candidate):
                break
        else:
            return contour  # a single pixel
        previous = _STEPS[(direction - 1) % 8]
        background = (current[0] + previous[0] - candidate[0], current[1] + previous[1] - candidate[1])
        if current == start and len(contour) > 1 and candidate == contour[1]:
            return contour[:-1]  # back at the start, about to repeat the first step
        current, back = candidate, _STEPS.index(background)
        contour.append(current)
    return contour


def _simplify(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop points in the middle of straight runs."""
    if len(points) < 3:
        return points
    kept = []
    for index, point in enumerate(points):
        before, after = points[index - 1], points[(index + 1) % len(points)]
        if (point[0] - before[0], point[1] - before[1]) != (after[0] - point[0], after[1] - point[1]):
            kept.append(point)
    return kept
