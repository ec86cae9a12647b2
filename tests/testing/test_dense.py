"""Generated dense-prediction data: the COCO file passes f2tune's own COCO reader, boxes enclose the
polygons, ADE20K labels are background + one shape class per image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from f2tune.config import CocoDetectionSource
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.testing.dense import ADE20K_BACKGROUND, write_ade20k, write_coco_instances
from f2tune.testing.shapes import SHAPES


def test_coco_instances_read_back(tmp_path: Path) -> None:
    path = write_coco_instances(tmp_path, 5, seed=3)
    source = CocoDetectionSource(format="coco_detection", path=str(path), image_root=str(tmp_path / "images"))
    samples = read_source(source, RecordProblems("raise"))
    assert len(samples) == 5 and all(s.reference["labels"][0] in SHAPES for s in samples)
    for ann in json.loads(path.read_text())["annotations"]:
        x, y, w, h = ann["bbox"]
        (polygon,) = ann["segmentation"]
        xs, ys = polygon[0::2], polygon[1::2]
        assert x <= min(xs) and max(xs) <= x + w and y <= min(ys) and max(ys) <= y + h
        assert 0 < ann["area"] <= w * h


def test_ade20k_layout_and_labels(tmp_path: Path) -> None:
    write_ade20k(tmp_path, {"training": 3, "validation": 2}, image_size=48)
    for split, count in (("training", 3), ("validation", 2)):
        images = sorted((tmp_path / "images" / split).glob("*.jpg"))
        labels = sorted((tmp_path / "annotations" / split).glob("*.png"))
        assert [p.stem for p in images] == [p.stem for p in labels] and len(images) == count
        for label_path in labels:
            values = set(np.unique(np.asarray(Image.open(label_path))).tolist())
            assert ADE20K_BACKGROUND in values and len(values) == 2
            assert max(values) <= ADE20K_BACKGROUND + len(SHAPES)
