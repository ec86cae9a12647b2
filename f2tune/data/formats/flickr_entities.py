"""Flickr30k Entities as released: phrase grounding of Flickr30k's captions. `format: flickr30k_entities`.

The release (github.com/BryanPlummer/flickr30k_entities, `annotations.zip`) holds, per image id:
- `Sentences/<id>.txt`: its five captions, one per line, each phrase bracketed with its entity id
  and types: `[/EN#18/people A man] in [/EN#21/clothing an orange hat] .`
- `Annotations/<id>.xml`: Pascal VOC-style objects, each naming one or more entity ids and holding
  a `bndbox` (1-based pixel indices, both ends inside the box) or `nobndbox` / `scene` (no box);
and the split lists `train.txt`, `val.txt`, `test.txt` (image ids). The images come from Flickr30k
itself (`flickr30k-images/<id>.jpg`, `image_root`).

One `<CAPTION_TO_PHRASE_GROUNDING>` sample per caption: the query is the caption without its
brackets, the answer every box of every phrase whose entity has boxes, each box named by its
phrase (an entity of several people is several boxes under one phrase, as Florence-2 answers).
Phrases without a box (scenes, non-visual phrases) are left out of the answer; a caption none of
whose phrases has a box has nothing to ground and gives no sample. Boxes are converted to
x1, y1, x2, y2 in pixels from the top-left corner (`xmin - 1`, `ymin - 1`, `xmax`, `ymax`) and
checked against the image size the annotation gives.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from f2tune.config import Flickr30kEntitiesSource
from f2tune.data.formats.coco import report_all
from f2tune.data.formats.structured import check_inside, check_task_fields
from f2tune.data.images import existing_image
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError, missing_file
from f2tune.tasks.schema import Annotation, Box

TASK = "<CAPTION_TO_PHRASE_GROUNDING>"
PHRASE = re.compile(r"\[/EN#(\d+)(?:/[^\s\]]*)* ([^\]]+)\]")
"""A bracketed phrase: its entity id, then (after the entity types) its words."""


def read_flickr_entities(source: Flickr30kEntitiesSource, problems: RecordProblems) -> list[Sample]:
    """Samples of the captions of one split's images; bad files and captions go to `problems`."""
    root = Path(source.path)
    split_file = root / f"{source.split}.txt"
    if problem := missing_file(split_file, "split list"):
        raise DataError(f"{problem} (the release's train.txt, val.txt, test.txt)")
    image_ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    messages: list[str] = []
    samples: list[Sample] = []
    for image_id in image_ids:
        try:
            samples += _image_samples(image_id, root, Path(source.image_root), messages)
        except DataError as err:
            messages.append(str(err))
    report_all(problems, messages, split_file)
    return samples


def _image_samples(image_id: str, root: Path, image_root: Path, messages: list[str]) -> list[Sample]:
    """One image's samples; a bad caption goes to `messages`, a bad image or annotation raises."""
    sentences = root / "Sentences" / f"{image_id}.txt"
    if not sentences.is_file():
        raise DataError(f"{sentences}: not found (image {image_id} is in the split list)")
    boxes, size = read_annotation(root / "Annotations" / f"{image_id}.xml")
    image = existing_image(image_root / f"{image_id}.jpg", f"{sentences}")
    try:
        text = sentences.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{sentences}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
        ) from None
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        origin = f"{sentences}:{number}"
        try:
            reference = caption_reference(line, boxes, origin)
            if reference is None:
                continue
            check_inside(reference, size, origin)
            check_task_fields(TASK, reference, origin)
        except DataError as err:
            messages.append(str(err))
            continue
        sample_id = f"{image_id}-{number - 1}"
        samples.append(Sample(sample_id, image, "", "", origin, task=TASK, reference=reference, declared_size=size))
    return samples


def caption_reference(line: str, boxes: dict[str, list[Box]], origin: str) -> Annotation | None:
    """The caption's query and its phrases' boxes, or None where no phrase has a box."""
    rest = PHRASE.sub("", line)
    if "[" in rest or "]" in rest:
        raise DataError(f"{origin}: a bracket that is not a phrase ([/EN#<id>/<type> words]): {line.strip()!r}")
    query = " ".join(PHRASE.sub(r"\2", line).split())
    if not query:
        return None
    reference: Annotation = {"query": query, "boxes": [], "labels": []}
    for entity, phrase in PHRASE.findall(line):
        for box in boxes.get(entity, []):
            reference["boxes"].append(box)
            reference["labels"].append(" ".join(phrase.split()))
    return reference if reference["boxes"] else None


def read_annotation(path: Path) -> tuple[dict[str, list[Box]], tuple[float, float]]:
    """(boxes per entity id, (width, height)) of one annotation file."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        tree = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise DataError(f"{path}: not valid XML ({err})") from None
    size = (_number(tree, "size/width", path), _number(tree, "size/height", path))
    if min(size) <= 0:
        raise DataError(f"{path}: the image size must be positive, got {size[0]:g}x{size[1]:g}")
    boxes: dict[str, list[Box]] = {}
    for index, item in enumerate(tree.iter("object")):
        found = item.find("bndbox")
        if found is None:
            continue
        where = f"object {index}"
        x1, y1, x2, y2 = (_number(found, key, path, where) for key in ("xmin", "ymin", "xmax", "ymax"))
        if x2 < x1 or y2 < y1:
            raise DataError(f"{path}: {where}: bndbox needs xmin <= xmax and ymin <= ymax, got {x1, y1, x2, y2}")
        for name in item.iter("name"):
            boxes.setdefault((name.text or "").strip(), []).append([x1 - 1, y1 - 1, x2, y2])
    return boxes, size


def _number(element: ElementTree.Element, key: str, path: Path, where: str = "") -> float:
    """The finite number in `key`'s text (a missing element reads as no number)."""
    text = element.findtext(key)
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        at = f"{where}: " if where else ""
        raise DataError(f"{path}: {at}<{key}> must be a number, got {text!r}")
    return value
