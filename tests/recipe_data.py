"""Stand-in datasets for the shipped recipes: a few drawn shapes written in each source's format, at
the paths its recipe names, so that a recipe runs end to end on the tiny model without its real data.

One shape per image gives every format what it needs: a category and a box (`coco_detection`), a
referring sentence and a polygon (`refcoco`), captions, a question with its answers, a text line
with its quad (`ocr`), a Hub detection dataset's objects row (`hf_dataset`), a caption grounding the
shape's phrase (`flickr30k_entities`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from f2tune.config import Recipe
from f2tune.testing.flickr_entities import write_entities_image, write_split
from f2tune.testing.shapes import SHAPES, shape_samples

IMAGE_SIZE = 64
CATEGORIES = [{"id": index + 1, "name": shape} for index, shape in enumerate(SHAPES)]


def write_recipe_data(recipe: Recipe, root: Path, per_source: int = 4) -> None:
    """Every data source of `recipe` written below `root` (the recipe's paths are relative to it),
    `per_source` images each.

    Formats whose one file holds every split (RefCOCO's instances and refs, Karpathy's split file)
    are written once per file, with each source's images tagged with the split it reads."""
    shared: dict[tuple[str, ...], list[tuple[str, list]]] = {}
    sources = [(split, source) for split in ("train", "val", "test") for source in getattr(recipe.data, split)]
    for seed, (split, source) in enumerate(sources):
        drawn = _drawn(per_source, seed, f"{split}{seed}")
        if source.format == "refcoco":
            key = (source.format, source.path, source.refs, source.image_root)
            shared.setdefault(key, []).append((source.split or split, drawn))
        elif source.format == "karpathy_captions":
            shared.setdefault((source.format, source.path, source.image_root), []).append((source.splits[0], drawn))
        elif source.format != "shapes":
            _WRITERS[source.format](source, root, drawn)
    for (kind, *paths), parts in shared.items():
        _SHARED_WRITERS[kind](*(root / path for path in paths), parts)


def _drawn(count: int, seed: int, prefix: str) -> list[tuple[str, object]]:
    """(file name, ShapeImage) pairs; the prefix keeps the files of different sources apart."""
    return [(f"{prefix}-{i}.png", s.image) for i, s in enumerate(shape_samples(count, seed, IMAGE_SIZE))]


def _save_images(folder: Path, drawn: Iterable[tuple[str, object]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in drawn:
        image.render().save(folder / name)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _coco_instances(drawn: list[tuple[str, object]]) -> dict:
    """COCO instances: one image and one annotation (box and its outline as polygon) per shape."""
    images, annotations = [], []
    for index, (name, image) in enumerate(drawn, start=1):
        x1, y1, x2, y2 = image.box
        images.append({"id": index, "file_name": name, "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        annotations.append(
            {
                "id": 100 + index,
                "image_id": index,
                "category_id": SHAPES.index(image.shape) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
            }
        )
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _write_coco_detection(source, root: Path, drawn) -> None:
    _save_images(root / source.image_root, drawn)
    _write_json(root / source.path, _coco_instances(drawn))


def _write_refcoco(path: Path, refs: Path, image_root: Path, parts: list[tuple[str, list]]) -> None:
    drawn = [pair for _, images in parts for pair in images]
    splits = [split for split, images in parts for _ in images]
    _save_images(image_root, drawn)
    instances = _coco_instances(drawn)
    _write_json(path, instances)
    _write_json(
        refs,
        [
            {
                "ref_id": 1000 + ann["id"],
                "ann_id": ann["id"],
                "image_id": ann["image_id"],
                "split": split,
                "sentences": [{"sent": f"the {image.colour} {image.shape}"}, {"sent": f"{image.colour} one"}],
            }
            for ann, (_, image), split in zip(instances["annotations"], drawn, splits)
        ],
    )


def _write_karpathy(path: Path, image_root: Path, parts: list[tuple[str, list]]) -> None:
    images = []
    for split, drawn in parts:
        _save_images(image_root / split, drawn)
        for name, image in drawn:
            sentences = [{"raw": f"a {image.colour} {image.shape}."}, {"raw": f"one {image.shape}"}]
            images.append(
                {"filepath": split, "filename": name, "imgid": len(images), "split": split, "sentences": sentences}
            )
    _write_json(path, {"images": images, "dataset": "coco"})


def _write_coco_captions(source, root: Path, drawn) -> None:
    _save_images(root / source.image_root, drawn)
    data = _coco_instances(drawn)
    data["annotations"] = [
        {"id": 10 * index + k, "image_id": index, "caption": caption}
        for index, (_, image) in enumerate(drawn, start=1)
        for k, caption in enumerate((f"a {image.colour} {image.shape}", f"one {image.shape}, {image.colour}"))
    ]
    _write_json(root / source.path, data)


def _write_beside(source, root: Path, drawn, record) -> None:
    """A JSONL format whose image paths are relative to the file: images in `images/` beside it."""
    path = root / source.path
    _save_images(path.parent / "images", drawn)
    _write_jsonl(path, [{"image": f"images/{name}", **record(image)} for name, image in drawn])


def _write_vqa(source, root: Path, drawn) -> None:
    _write_beside(source, root, drawn, lambda s: {"question": "What colour is it?", "answers": [s.colour] * 3})


def _write_ocr(source, root: Path, drawn) -> None:
    def lines(image) -> dict:
        x1, y1, x2, y2 = image.box
        return {"lines": [{"text": image.colour.upper(), "quad": [x1, y1, x2, y1, x2, y2, x1, y2]}]}

    _write_beside(source, root, drawn, lines)


def _write_jsonl_source(source, root: Path, drawn) -> None:
    prompt = {} if source.prompt else {"prompt": "<CAPTION>"}
    _write_beside(source, root, drawn, lambda s: {**prompt, "target": f"a {s.colour} {s.shape}"})


def _write_structured(source, root: Path, drawn) -> None:
    _write_beside(source, root, drawn, lambda s: {"task": "<OD>", "boxes": [list(s.box)], "labels": [s.shape]})


def _write_hub_objects(source, root: Path, drawn) -> None:
    """A Hub detection dataset's parquet file for the source's split, in cppe-5's layout (objects as a
    Sequence of {bbox as x, y, width, height, category as ClassLabel}, width and height columns)."""
    import datasets

    features = datasets.Features(
        {
            source.image_column: datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            source.objects_column: datasets.Sequence(
                {
                    source.box_key: datasets.Sequence(datasets.Value("float32"), length=4),
                    source.label_key: datasets.ClassLabel(names=list(SHAPES)),
                }
            ),
        }
    )
    rows = {
        source.image_column: [image.render() for _, image in drawn],
        "width": [IMAGE_SIZE] * len(drawn),
        "height": [IMAGE_SIZE] * len(drawn),
        source.objects_column: [_one_object(source, image) for _, image in drawn],
    }
    path = root / source.path / "data" / f"{source.split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))


def _one_object(source, image) -> dict:
    x1, y1, x2, y2 = image.box
    box = [x1, y1, x2 - x1, y2 - y1] if source.box_format == "xywh" else [x1, y1, x2, y2]
    return {source.box_key: [box], source.label_key: [SHAPES.index(image.shape)]}


def _write_flickr_entities(source, root: Path, drawn) -> None:
    """The release layout for the source's split: a caption per image grounding its shape's phrase,
    and one with a phrase that has no box (the background)."""
    folder = root / source.path
    ids = [Path(name).stem for name, _ in drawn]
    (root / source.image_root).mkdir(parents=True, exist_ok=True)
    for image_id, (_, image) in zip(ids, drawn):
        image.render().save(root / source.image_root / f"{image_id}.jpg")
        captions = [
            f"[/EN#1/other A {image.colour} {image.shape}] on [/EN#2/scene a plain background] .",
            f"[/EN#1/other One {image.shape}] .",
        ]
        objects = [(["1"], image.box), (["2"], None)]
        write_entities_image(folder, image_id, captions, objects, (IMAGE_SIZE, IMAGE_SIZE))
    write_split(folder, source.split, ids)


_WRITERS = {
    "coco_detection": _write_coco_detection,
    "flickr30k_entities": _write_flickr_entities,
    "coco_captions": _write_coco_captions,
    "vqa": _write_vqa,
    "ocr": _write_ocr,
    "jsonl": _write_jsonl_source,
    "structured_jsonl": _write_structured,
    "hf_dataset": _write_hub_objects,
}
_SHARED_WRITERS = {"refcoco": _write_refcoco, "karpathy_captions": _write_karpathy}
"""Formats without a writer here fail the recipe test with a KeyError naming them: a recipe that
reads one needs its writer first (the `hf_dataset` writer writes detection rows only)."""
