"""Mask IoU of polygon answers (`<REFERRING_EXPRESSION_SEGMENTATION>`, `<REGION_TO_SEGMENTATION>`).

Both the generated and the reference polygons are rasterized at the image size, and the masks are
compared pixel by pixel. Two numbers, as referring-segmentation papers report them: mIoU, the mean of
the per-sample IoUs (every object counts the same), and oIoU, the total intersection over the total
union (large objects count more).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask
from torchmetrics import Metric

from f2tune.tasks.schema import Annotation, Polygon


def rasterize(polygons: Sequence[Polygon], size: tuple[int, int]) -> np.ndarray:
    """The (height, width) boolean mask of the union of `polygons` (flat x, y pixel lists) in an image
    of `size` = (width, height), as pycocotools rasterizes COCO's and RefCOCO's masks: the pixels whose
    centre (i + 0.5, j + 0.5) lies inside a polygon (about the polygon's exact area; PIL's outline
    filling added a rim that grew a 10-pixel object's mask by a seventh).

    A trailing odd coordinate is dropped and parts with fewer than 3 points are skipped: they enclose
    no area (a truncated generation can produce them), and pycocotools would read 4 numbers as a box.
    """
    width, height = size
    parts = [list(map(float, polygon[: len(polygon) - len(polygon) % 2])) for polygon in polygons]
    parts = [part for part in parts if len(part) >= 6]
    if not parts:
        return np.zeros((height, width), dtype=bool)
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(parts, height, width))).astype(bool)


class PolygonIoU(Metric):
    """mIoU and oIoU of `Annotation`s with `polygons` (one object, possibly in several parts).

    `update` needs each image's size, (width, height) as PIL gives it, to rasterize at. A sample whose
    prediction and reference are both empty has IoU 1: the answer agrees with the reference.
    """

    keys = ("miou", "oiou")
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("iou_sum", "count", "intersection", "union"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        predictions: Sequence[Annotation],
        references: Sequence[Annotation],
        image_sizes: Sequence[tuple[int, int]],
    ) -> None:
        """Add one batch; `image_sizes[i]` is the (width, height) of sample i's original image."""
        for prediction, reference, size in zip(predictions, references, image_sizes, strict=True):
            predicted = rasterize(prediction.get("polygons", []), size)
            expected = rasterize(reference.get("polygons", []), size)
            intersection = int(np.logical_and(predicted, expected).sum())
            union = int(np.logical_or(predicted, expected).sum())
            self.iou_sum += intersection / union if union else 1.0
            self.count += 1
            self.intersection += intersection
            self.union += union

    def compute(self) -> dict[str, float]:
        """`miou` and `oiou` over every sample seen (NaN before any update)."""
        if not self.count:
            return {"miou": float("nan"), "oiou": float("nan")}
        oiou = self.intersection / self.union if self.union else torch.tensor(1.0)
        return {"miou": float(self.iou_sum / self.count), "oiou": float(oiou)}
