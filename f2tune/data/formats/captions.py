"""COCO captions JSON (`images`, `annotations` with `caption`) + an image folder. `format: coco_captions`.

Training gets one sample per caption: COCO has ~5 per image, and each is an equally good target.
Validation wants one sample per image with every caption as a reference (CIDEr scores against all
of them): `one_per_image: true` keeps them in `reference.answers` (`text` = the first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from f2tune.config import CocoCaptionsSource
from f2tune.data.formats.coco import (
    annotation_where,
    existing_image,
    index_images,
    read_coco_json,
    report_all,
    require_int,
)
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.tasks.schema import Annotation


def read_coco_captions(source: CocoCaptionsSource, problems: RecordProblems) -> list[Sample]:
    """Caption samples of one file; bad records go to `problems`."""
    path = Path(source.path)
    data = read_coco_json(path, ("images", "annotations"))
    messages: list[str] = []
    images = index_images(data, path, Path(source.image_root), messages)
    captions: dict[int, list[tuple[str, str]]] = {}  # image id -> (annotation id, caption)
    for position, ann in enumerate(data["annotations"]):
        where = annotation_where(path, position, ann)
        try:
            image_id, caption = _caption(ann, images, where)
        except DataError as err:
            messages.append(str(err))
            continue
        captions.setdefault(image_id, []).append((str(ann.get("id", position)), caption))
    samples: list[Sample] = []
    for image_id, found in captions.items():
        where = f"{path}:image {image_id}"
        try:
            image_path = existing_image(images[image_id], where)
        except DataError as err:
            messages.append(str(err))
            continue
        if source.one_per_image:
            reference: Annotation = {"text": found[0][1], "answers": [c for _, c in found]}
            samples.append(_sample(str(image_id), image_path, where, source.task, reference))
        else:
            for ann_id, caption in found:
                origin = f"{path}:annotation {ann_id}"
                samples.append(_sample(f"{image_id}-{ann_id}", image_path, origin, source.task, {"text": caption}))
    report_all(problems, messages, path)
    return samples


def _caption(ann: Any, images: dict, where: str) -> tuple[int, str]:
    if not isinstance(ann, dict):
        raise DataError(f"{where}: expected an object, got {type(ann).__name__}")
    missing = [key for key in ("image_id", "caption") if key not in ann]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    if require_int(ann, "image_id", where) not in images:
        raise DataError(f"{where}: image_id {ann['image_id']!r} is not listed in 'images'")
    caption = ann["caption"]
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"{where}: 'caption' must be a non-empty string, got {caption!r}")
    return ann["image_id"], caption.strip()


def _sample(sample_id: str, image: Path, origin: str, task: str, reference: Annotation) -> Sample:
    return Sample(id=sample_id, image=image, prompt="", target="", origin=origin, task=task, reference=reference)
