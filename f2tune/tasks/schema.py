"""The structured form of a task's answer, shared by dataset readers, target builders, output
parsers and metrics. Coordinates are pixels of the original image (x right, y down)."""

from __future__ import annotations

from typing import TypedDict

Box = list[float]
"""x1, y1, x2, y2."""

Polygon = list[float]
"""Flat x1, y1, x2, y2, ... (at least 3 points)."""

Quad = list[float]
"""x1, y1, ..., x4, y4: four corners, clockwise from top-left as written by OCR datasets."""


class Annotation(TypedDict, total=False):
    """What each task reads (as its input) and writes (as its answer); fields a task does not use
    are absent.

    - captions, `<OCR>`, `<REGION_TO_*>` answers, custom prompts: `text`
    - `<OD>`, `<DENSE_REGION_CAPTION>`, `<OPEN_VOCABULARY_DETECTION>`, grounding: `boxes` + `labels`
    - `<REGION_PROPOSAL>`: `boxes`
    - `<REFERRING_EXPRESSION_SEGMENTATION>`, `<REGION_TO_SEGMENTATION>`: `polygons` (one object,
      possibly in several parts)
    - `<OCR_WITH_REGION>`: `quads` + `labels`
    - VQA: `answers` (every reference answer; `text` is the one trained on)
    Inputs: `query` (text after a text-input task token: caption, expression, category) and
    `region` (the box after a region-input task token).
    Evaluation only, never trained on: `crowd_boxes` + `crowd_labels`, COCO's `iscrowd` regions,
    which COCO mAP ignores detections in; `areas` (`crowd_areas`), COCO's `area` of each box's
    object (of its segment, 0 where unknown), which COCO's size ranges are judged by.
    """

    text: str
    boxes: list[Box]
    labels: list[str]
    polygons: list[Polygon]
    quads: list[Quad]
    answers: list[str]
    scores: list[float]
    query: str
    region: Box
    crowd_boxes: list[Box]
    crowd_labels: list[str]
    areas: list[float]
    crowd_areas: list[float]
