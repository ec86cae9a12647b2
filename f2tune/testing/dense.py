"""Coloured-shape datasets on disk in the formats dense-prediction frameworks read: COCO instances
(boxes + polygons, for detectron2) and ADE20K folders (for mmsegmentation). Tests and backbone
benchmarks train on them offline; the shapes are those of `f2tune.testing.shapes`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from f2tune.data.formats.refcoco import mask_polygons
from f2tune.testing.shapes import SHAPES, ShapeImage, shape_samples

ADE20K_BACKGROUND = 1
"""ADE20K labels count from 1 (0 is 'unlabelled', ignored); the background is class 1, shapes 2.."""


def write_coco_instances(folder: str | Path, num_images: int, seed: int = 0, image_size: int = 96) -> Path:
    """`folder/images/*.png` and `folder/instances.json` (one shape per image, categories = shapes);
    returns the JSON path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, sample in enumerate(shape_samples(num_images, seed, image_size, name="coco")):
        shape: ShapeImage = sample.image  # type: ignore[assignment]
        file_name = f"{index:05d}.png"
        shape.render().save(folder / "images" / file_name)
        mask = np.asarray(shape.mask())
        ys, xs = np.nonzero(mask)
        x1, y1 = float(xs.min()), float(ys.min())
        images.append({"id": index, "file_name": file_name, "width": image_size, "height": image_size})
        annotations.append(
            {
                "id": index,
                "image_id": index,
                "category_id": SHAPES.index(shape.shape) + 1,
                "bbox": [x1, y1, float(xs.max()) + 1 - x1, float(ys.max()) + 1 - y1],
                "segmentation": mask_polygons(mask),
                "area": float(mask.sum()),
                "iscrowd": 0,
            }
        )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPES)]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_ade20k(folder: str | Path, splits: dict[str, int], seed: int = 0, image_size: int = 64) -> Path:
    """ADE20K layout: `images/<split>/*.jpg` and `annotations/<split>/*.png` for each split
    (e.g. {"training": 8, "validation": 4}); pixels of a shape are labelled 2 + its shape index."""
    folder = Path(folder)
    for offset, (split, count) in enumerate(splits.items()):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for index, sample in enumerate(shape_samples(count, seed + offset, image_size, name=split)):
            shape: ShapeImage = sample.image  # type: ignore[assignment]
            label = np.where(
                np.asarray(shape.mask()) > 0, ADE20K_BACKGROUND + 1 + SHAPES.index(shape.shape), ADE20K_BACKGROUND
            )
            shape.render().save(folder / "images" / split / f"{index:05d}.jpg", quality=95)
            Image.fromarray(label.astype(np.uint8)).save(folder / "annotations" / split / f"{index:05d}.png")
    return folder
