"""Caption files + an image folder: COCO captions JSON (`images`, `annotations` with `caption`;
`format: coco_captions`) and Karpathy's split files as released (`dataset_coco.json`,
`dataset_flickr30k.json`: `images` with `split`, `filepath`/`filename`, `sentences`;
`format: karpathy_captions`), the splits every captioning paper reports on.

Training gets one sample per caption: COCO has ~5 per image, and each is an equally good target.
Validation wants one sample per image with every caption as a reference (CIDEr scores against all
of them): `one_per_image: true` keeps them in `reference.answers` (`text` = the first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from f2tune.config import CocoCaptionsSource, KarpathyCaptionsSource
from f2tune.config.sources import CaptionsSource
from f2tune.data.formats.coco import (
    annotation_where,
    index_images,
    is_int,
    read_coco_json,
    report_all,
    require_int,
)
from f2tune.data.images import existing_image
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import RenderedImage, Sample
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
        ann_id = str(ann.get("id", position))
        captions.setdefault(image_id, []).append((ann_id, caption, f"{path}:annotation {ann_id}"))
    samples: list[Sample] = []
    for image_id, found in captions.items():
        where = f"{path}:image {image_id}"
        try:
            image_path = existing_image(images[image_id].path, where)
        except DataError as err:
            messages.append(str(err))
            continue
        samples += _caption_samples(source, str(image_id), image_path, where, found)
    report_all(problems, messages, path)
    return samples


def read_karpathy_captions(source: KarpathyCaptionsSource, problems: RecordProblems) -> list[Sample]:
    """Caption samples of the images of `source.splits`; bad entries of those splits go to `problems`."""
    path = Path(source.path)
    data = read_coco_json(path, ("images",), kind="Karpathy split")
    messages: list[str] = []
    samples: list[Sample] = []
    for position, entry in enumerate(data["images"]):
        if not isinstance(entry, dict):
            messages.append(f"{path}:images[{position}]: expected an object, got {type(entry).__name__}")
        elif entry.get("split") in source.splits:
            try:
                samples += _karpathy_samples(source, entry, f"{path}:images[{position}]")
            except DataError as err:
                messages.append(str(err))
    report_all(problems, messages, path)
    return samples


def _karpathy_samples(source: KarpathyCaptionsSource, entry: dict, where: str) -> list[Sample]:
    """One image's samples: id `cocoid` (COCO) or `imgid` (Flickr), file `filepath/filename`."""
    image_id = next((entry[key] for key in ("cocoid", "imgid") if is_int(entry.get(key))), None)
    if image_id is not None:
        where = f"{where} (id {image_id})"
    folder, name = entry.get("filepath", ""), entry.get("filename")
    if not isinstance(name, str) or not name or not isinstance(folder, str):
        raise DataError(f"{where}: 'filename' (and 'filepath', where given) must be non-empty strings")
    sentences = entry.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise DataError(f"{where}: 'sentences' must be a non-empty list")
    found = []
    for number, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            raise DataError(f"{where}: sentences[{number}] has no 'raw' caption")
        found.append((str(number), raw.strip(), f"{where} sentence {number}"))
    image_path = existing_image(Path(source.image_root) / folder / name, where)
    return _caption_samples(source, str(image_id if image_id is not None else name), image_path, where, found)


def _caption_samples(
    source: CaptionsSource, image_id: str, image: Path, where: str, found: list[tuple[str, str, str]]
) -> list[Sample]:
    return caption_samples(source.task, source.one_per_image, image_id, image, where, found)


def caption_samples(
    task: str,
    one_per_image: bool,
    image_id: str,
    image: Path | RenderedImage,
    where: str,
    found: list[tuple[str, str, str]],
) -> list[Sample]:
    """One image's samples from its (caption id, caption, origin) triples: one per caption, or one
    holding every caption as references (`one_per_image`)."""
    if one_per_image:
        reference: Annotation = {"text": found[0][1], "answers": [caption for _, caption, _ in found]}
        return [_sample(image_id, image, where, task, reference)]
    return [
        _sample(f"{image_id}-{caption_id}", image, origin, task, {"text": caption})
        for caption_id, caption, origin in found
    ]


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


def _sample(sample_id: str, image: Path | RenderedImage, origin: str, task: str, reference: Annotation) -> Sample:
    return Sample(id=sample_id, image=image, prompt="", target="", origin=origin, task=task, reference=reference)
