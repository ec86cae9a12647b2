"""Box metrics: COCO mAP for detection outputs, Acc@IoU0.5 for referring expressions and phrase grounding
(Flickr30k Entities' Recall@1 under its two protocols, ANY-BOX and MERGED-BOXES).

mAP ranks detections by confidence, so every predicted box should carry a score (Florence-2 has no
detection head; `f2tune.eval.scores.box_scores` derives one from the generated tokens'
probabilities). A prediction without `scores` gets 1.0 for every box, which collapses the
precision-recall curve of its image to one point; the metric still takes real scores box by box.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from torchmetrics.utilities import dim_zero_cat

from f2tune.eval.metrics import PerSampleMean, normalize
from f2tune.tasks.schema import Annotation, Box


def label_id(label: str) -> int:
    """The id of a (normalized) label string, a 63-bit hash (a non-negative int64).

    A hash rather than a running counter: the id must be the same in every batch *and* in every DDP
    process, whose states are merged before pycocotools sees them, and a counter would number the
    classes in the order each process happened to meet them. 63 bits, because free-text labels
    (region descriptions, an early model's inventions) run to tens of thousands: 31-bit ids made
    two of 50,000 labels one class with a chance of 4 in 10. `compute` renumbers the ids from 0
    for torchmetrics, which keeps class ids as int32.
    """
    digest = hashlib.blake2b(normalize(label).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()
"""pycocotools' own thresholds, in float64. torchmetrics builds its defaults with float32
`torch.linspace`, where recall 0.6 is 0.6000000238 > 3/5: a recall of exactly 3/5 then misses its
step of the precision-recall curve, and mAP moves by up to a few thousandths from COCO's."""


class CocoMeanAP(Metric):
    """COCO box mAP (pycocotools through torchmetrics) over `Annotation`s with `boxes` (x1, y1, x2,
    y2 pixels), `labels` (strings; compared after `normalize`) and, for predictions, `scores`.

    An annotation without `labels` (`<REGION_PROPOSAL>`) puts all its boxes in one class, which gives
    class-agnostic AP; so does `class_agnostic=True` for annotations that have labels (a proposals
    reference read with its categories, which the model's unlabelled proposals would never match).
    A reference's `crowd_boxes` (COCO's `iscrowd` regions) are COCO's ignore regions: a detection
    inside one is neither a hit nor a false positive. Its `areas` (`crowd_areas`), COCO's `area` of
    each object, decide the small/medium/large ranges as in COCO (a segment's pixels, not its box);
    where there are none, or one is 0, the box's area does. `compute()` returns every number of the COCO
    summary (`map`, `map_50`, `map_75`, `map_small`, ..., `mar_100`) as floats; -1 means "no box of
    that kind", as in COCO.

    Why not a `MeanAveragePrecision` subclass: that keeps one tensor per image in lists which DDP
    gathers element by element, so processes that saw different numbers of images (a task's share of
    a mixed batch differs by process) fail or hang. Here each state is one flat tensor per batch,
    with a per-image box count to split it again, gathered as a whole (`dist_reduce_fx="cat"`);
    `compute` hands the per-image dicts to a process-local `MeanAveragePrecision`.
    """

    keys = (
        "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
        "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
    )  # fmt: skip
    """What `compute` returns: torchmetrics' COCO summary, without its per-class entries."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, class_agnostic: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # built now, so that a missing torchvision or pycocotools fails before validation, not after it
        self.evaluator = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            iou_thresholds=COCO_IOU_THRESHOLDS,
            rec_thresholds=COCO_RECALL_THRESHOLDS,
            sync_on_compute=False,
        )
        self.class_agnostic = class_agnostic
        boxes, floats = torch.zeros(0, 4, dtype=torch.float32), torch.zeros(0, dtype=torch.float32)
        long = torch.zeros(0, dtype=torch.long)
        self._empty = {"pred_boxes": boxes, "pred_scores": floats, "ref_boxes": boxes, "ref_areas": floats}
        self._empty |= {f"{side}_{name}": long for side in ("pred", "ref") for name in ("labels", "counts")}
        self._empty["ref_crowds"] = long
        for name in self._empty:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _labels(self, annotation: Annotation, boxes: str, labels: str) -> list[str]:
        """The label of each of `annotation[boxes]` from `annotation[labels]`: "" (one class) for
        all when the annotation has none or the metric is class-agnostic."""
        count = len(annotation.get(boxes, []))
        return [""] * count if self.class_agnostic else list(annotation.get(labels) or [""] * count)

    def update(self, predictions: Sequence[Annotation], references: Sequence[Annotation]) -> None:
        """Add one batch of images: `predictions[i]` are the boxes generated for image i."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        scores: list[float] = []
        for prediction in predictions:
            boxes, given = len(prediction.get("boxes", [])), prediction.get("scores")
            if given is not None and len(given) != boxes:
                raise ValueError(f"{len(given)} scores for {boxes} boxes")
            scores += [1.0] * boxes if given is None else given
        self.pred_scores.append(torch.tensor(scores, dtype=torch.float32, device=self.device))
        self._add("pred", [(p.get("boxes", []), self._labels(p, "boxes", "labels")) for p in predictions])
        images, crowds, areas = [], [], []
        for reference in references:  # its crowd regions follow its objects, flagged in ref_crowds
            objects, regions = reference.get("boxes", []), reference.get("crowd_boxes", [])
            labels = self._labels(reference, "boxes", "labels") + self._labels(reference, "crowd_boxes", "crowd_labels")
            images.append((objects + regions, labels))
            crowds += [0] * len(objects) + [1] * len(regions)
            areas += reference.get("areas") or [0.0] * len(objects)
            areas += reference.get("crowd_areas") or [0.0] * len(regions)
        self._add("ref", images)
        self.ref_crowds.append(torch.tensor(crowds, device=self.device).long())
        self.ref_areas.append(torch.tensor(areas, dtype=torch.float32, device=self.device))

    def _add(self, side: str, images: list[tuple[list[Box], list[str]]]) -> None:
        """One batch of one side's images, given as (boxes, their labels): the boxes and label ids
        flat, and each image's box count to split them again."""
        boxes = torch.tensor([box for image_boxes, _ in images for box in image_boxes], dtype=torch.float32)
        labels = [label_id(label) for _, image_labels in images for label in image_labels]
        getattr(self, f"{side}_boxes").append(boxes.to(self.device).reshape(-1, 4))
        getattr(self, f"{side}_labels").append(torch.tensor(labels, device=self.device).long())
        counts = [len(image_boxes) for image_boxes, _ in images]
        getattr(self, f"{side}_counts").append(torch.tensor(counts, device=self.device).long())

    def _fill_empty(self) -> None:
        for name, empty in self._empty.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                getattr(self, name).append(empty.to(self.device))

    def sync(self, *args: Any, **kwargs: Any) -> None:
        """Sync as torchmetrics does, once every empty state holds a typed empty tensor: for a process
        without images torchmetrics would send float placeholders, which cannot be gathered with the
        integer labels of the others."""
        self._fill_empty()
        super().sync(*args, **kwargs)

    def _images(self, side: str, classes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image, the dict torchmetrics takes: its names for this metric's states, with the
        side's labels given as `classes` (small ids)."""
        counts = dim_zero_cat(getattr(self, f"{side}_counts")).tolist()
        names = {"boxes": "boxes"} | (
            {"scores": "scores"} if side == "pred" else {"crowds": "iscrowd", "areas": "area"}
        )
        parts = [dim_zero_cat(getattr(self, f"{side}_{state}")).split(counts) for state in names]
        parts.append(classes.split(counts))
        return [dict(zip([*names.values(), "labels"], values)) for values in zip(*parts)]

    def compute(self) -> dict[str, float]:
        """The COCO summary numbers. Per-class numbers are left out: the class ids are hashes."""
        self._fill_empty()
        hashed = [dim_zero_cat(getattr(self, f"{side}_labels")) for side in ("pred", "ref")]
        _, classes = torch.cat(hashed).unique(return_inverse=True)  # 0, 1, ...: torchmetrics' int32 fits
        predicted, referenced = classes.split([len(hashed[0]), len(hashed[1])])
        self.evaluator.reset()
        self.evaluator.update(self._images("pred", predicted), self._images("ref", referenced))
        result = self.evaluator.compute()
        self.evaluator.reset()
        return {key: float(value) for key, value in result.items() if key != "classes" and "per_class" not in key}


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes (0 when both are empty)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


class GroundingAccuracy(PerSampleMean):
    """Acc@IoU0.5 over the reference's phrases: RefCOCO's accuracy for a referring expression (one
    phrase) and Flickr30k Entities' Recall@1 for the phrases of a grounded caption (ANY-BOX
    protocol: a phrase is found when its first predicted box overlaps one of the phrase's reference
    boxes with IoU >= `threshold`). The mean is over phrases, not samples, as Recall@1 is reported.

    A reference's phrases are its distinct labels (one phrase without labels). Each phrase's first
    box is the first predicted box named by it (names compared normalized); a phrase the prediction
    does not name is not found. Except for a one-expression task (`by_name=False`: a referring
    expression, an open-vocabulary query) with one phrase: there the prediction's first box counts,
    whatever it is named, since the model is asked for one object, and a model that lists many boxes
    must not be rewarded for one of them hitting. A grounded caption (`by_name=True`) with one boxed
    phrase is not such a task: the model grounds every phrase it sees ("the snow" too), so its first
    box may belong to another phrase.
    """

    key = "grounding_acc"

    def __init__(self, threshold: float = 0.5, by_name: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.by_name = by_name

    def update(self, predictions: Sequence[Annotation], references: Sequence[Annotation]) -> None:
        for prediction, reference in zip(predictions, references, strict=True):
            phrases = _phrases(reference)
            by_name = self.by_name or len(phrases) > 1
            self.total += sum(self._found(prediction, phrase, boxes, by_name) for phrase, boxes in phrases)
            self.count += len(phrases)

    def _found(self, prediction: Annotation, phrase: str, boxes: list[Box], by_name: bool) -> bool:
        predicted = prediction.get("boxes") or []
        if by_name:
            names = [normalize(label) for label in prediction.get("labels") or []]
            predicted = [box for box, name in zip(predicted, names) if name == phrase]
        return bool(predicted) and self._hits(predicted, boxes)

    def _hits(self, predicted: list[Box], boxes: list[Box]) -> bool:
        """Whether a phrase's predicted boxes (at least one, in the prediction's order) find it."""
        return any(box_iou(predicted[0], box) >= self.threshold for box in boxes)


class MergedGroundingAccuracy(GroundingAccuracy):
    """Flickr30k Entities' Recall@1 under the MERGED-BOXES protocol: a phrase that names several
    objects ("two dogs") is one region, the box enclosing all its reference boxes, and is found when
    the box enclosing the boxes the prediction gives it has IoU >= `threshold` with that region.

    Why the prediction's boxes are merged too: f2tune trains phrase grounding on every box of a
    phrase, so a model answers "two dogs" with two boxes, and its first box alone would miss the
    merged region by design. A model trained on merged targets answers with one box, and for one
    box the two readings agree. Which predicted boxes belong to a phrase is decided as in
    `GroundingAccuracy`; where each phrase has one reference box and is answered with one box (most
    of RefCOCO), the two metrics agree.
    """

    key = "grounding_acc_merged"

    def _hits(self, predicted: list[Box], boxes: list[Box]) -> bool:
        return box_iou(enclosing_box(predicted), enclosing_box(boxes)) >= self.threshold


def enclosing_box(boxes: Sequence[Box]) -> Box:
    """The smallest x1, y1, x2, y2 box that holds every one of `boxes` (at least one)."""
    return [
        min(box[0] for box in boxes),
        min(box[1] for box in boxes),
        max(box[2] for box in boxes),
        max(box[3] for box in boxes),
    ]


def _phrases(reference: Annotation) -> list[tuple[str, list[Box]]]:
    """(normalized phrase, its boxes) per distinct label of the reference, in order of appearance."""
    boxes = reference.get("boxes") or []
    labels = reference.get("labels") or [""] * len(boxes)
    phrases: dict[str, list[Box]] = {}
    for box, label in zip(boxes, labels):
        phrases.setdefault(normalize(label), []).append(box)
    return list(phrases.items())
