"""Training-time augmentation that keeps every annotation consistent with the augmented image.

Florence-2 answers in image coordinates, so a flip or a crop that moved the pixels but not the
boxes would teach the model wrong locations. Geometry therefore goes through albumentations with the
image: boxes as `bbox_params` (pascal_voc, with an id label field so labels and scores stay aligned),
and polygons, quads and the input `region` as `keypoint_params` corners that are clipped or dropped
here, because albumentations' keypoint filter only knows single points, not shapes.

Rules for what survives a draw (counted in the returned `dropped`):
- box: dropped by albumentations when less than `min_visibility` of its area stays in the image or
  its clipped area is below `min_area`; otherwise clipped to the image. Invalid input boxes
  (x2 <= x1) are dropped too.
- polygon part: clipped to the image (Sutherland-Hodgman); dropped when < 3 points remain, its area
  is zero or below `min_area`, or less than `min_visibility` of it stays in the image.
- quad: dropped when a corner leaves the image (by more than 1 px) - a cut text line no longer
  matches its label - or its area is zero or below `min_area`. Corners are re-ordered after a mirror
  (flip) so they stay clockwise from top-left.
- region: never dropped. A draw that keeps less than `region_min_visibility` of the region, or that
  drops every box/polygon part/quad of a sample that had some, is rejected and drawn again; after
  `max_attempts` rejections the sample is returned unaugmented (RGB) with 0 dropped, so a caller
  never receives an annotation that no longer answers its prompt.

Horizontal flips are skipped for samples whose text mentions a side (a word starting with "left" or
"right", any case) unless `allow_hflip_with_sides` is set; even then the words are not swapped. OCR
samples (the `<OCR*>` and `<REGION_TO_OCR>` tasks) are never flipped. Samples whose answer is text
alone (prompt/target records, and structured captions, VQA and `<OCR>` samples: nothing in the
annotation moves with the pixels) are flipped and coloured but not warped: a crop may cut away what
their answer counts or reads.

Coordinates: f2tune uses continuous pixel coordinates (the right edge of a W-wide image is x = W);
albumentations 2.x keypoints use pixel-centre indices (its flip maps x to W - 1 - x), so keypoints
are shifted by 0.5 on the way in and out.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from torch.utils.data import get_worker_info

from f2tune.config import AugmentConfig
from f2tune.data.polygons import Point, clip_polygon, polygon_area
from f2tune.tasks.schema import Annotation

if TYPE_CHECKING:
    import albumentations as A

_SIDES = re.compile(r"\b(left|right)", re.IGNORECASE)
READS_TEXT = ("<OCR>", "<OCR_WITH_REGION>", "<REGION_TO_OCR>")
"""Tasks whose answer is the text in the picture: mirrored, the picture holds no text its labels spell."""
SHAPE_FIELDS = ("boxes", "polygons", "quads", "region")
"""Annotation fields that move with the pixels; an annotation without any is text alone."""
PIPELINES = ((False, True), (True, True), (False, False), (True, False))
"""(flip, warp) of each pipeline, in the order their seeds follow the augmentation's."""
_QUAD_TOLERANCE = 1.0
"""Pixels a transformed quad corner may lie outside the image (rounding of the warp) before it counts as cut."""
_MIRROR = (1, 0, 3, 2)
"""Corner order that turns a mirrored clockwise-from-top-left quad back into clockwise from top-left."""


def mentions_sides(text: str) -> bool:
    """Whether `text` names a side ("left", "right", "leftmost", "Right-hand", ...): flipping would make it wrong."""
    return _SIDES.search(text) is not None


def moves_with_pixels(prompt: str, target: str) -> bool:
    """Whether a prompt/target sample can be augmented: its text holds no `<loc_N>` tokens."""
    return "<loc_" not in prompt + target


def _clamp(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.stack([points[:, 0].clip(0, width), points[:, 1].clip(0, height)], axis=1)


def _flat(points: np.ndarray | list[Point]) -> list[float]:
    """Flat python floats, rounded to 1/1000 px to hide albumentations' float32 round trip (20.0000003)."""
    return [round(float(v), 3) for p in points for v in p]


class Augmentation:
    """A seeded albumentations pipeline (one with the flip, one without) plus the shape bookkeeping.

    Picklable, so it can live in a Dataset; inside a DataLoader worker it reseeds itself from the
    worker's torch seed, otherwise forked workers would all draw the same augmentations.
    """

    def __init__(self, config: AugmentConfig, seed: int | None = None) -> None:
        self.config = config
        self._pipelines = {
            (flip, warp): _pipeline(config, flip=flip, warp=warp, seed=None if seed is None else seed + offset)
            for offset, (flip, warp) in enumerate(PIPELINES)
            if config.hflip or not flip
        }
        self._seeded_for: int | None = None

    def __call__(
        self, image: Image.Image, annotation: Annotation, task_text: str = "", warp: bool = True
    ) -> tuple[Image.Image, Annotation, int]:
        """Augment one sample; returns (image, annotation with the same fields, items dropped).
        `task_text`: the task token or prompt; `warp=False`: no scale, shift or turn, as for any
        annotation without shapes (an answer of text only may count or read what a warp cuts away)."""
        self._reseed_in_worker()
        warp = warp and any(field in annotation for field in SHAPE_FIELDS)
        texts = [task_text, annotation.get("query", ""), annotation.get("text", ""), *annotation.get("labels", [])]
        sided = any(mentions_sides(t) for t in texts)
        mirror = not task_text.startswith(READS_TEXT) and (not sided or self.config.allow_hflip_with_sides)
        pipeline = self._pipelines[(mirror and bool(self.config.hflip), warp)]
        rgb = image.convert("RGB")
        array = np.asarray(rgb)
        for _ in range(self.config.max_attempts):
            result = self._attempt(pipeline, array, annotation)
            if result is not None:
                out, new_annotation, dropped = result
                return Image.fromarray(out), new_annotation, dropped
        return rgb, copy.deepcopy(annotation), 0

    def text_sample(self, image: Image.Image, prompt: str, target: str) -> Image.Image:
        """The image of a prompt/target sample, flipped and coloured but not warped (a crop may cut
        away what a text answer counts or reads); as it is where its text holds location tokens,
        which cannot move with the pixels (`moves_with_pixels`)."""
        if not moves_with_pixels(prompt, target):
            return image
        return self(image, {"text": target}, task_text=prompt, warp=False)[0]

    def _reseed_in_worker(self) -> None:
        info = get_worker_info()
        if info is not None and self._seeded_for != info.seed:
            for offset, key in enumerate(PIPELINES):
                if key in self._pipelines:
                    self._pipelines[key].set_random_seed((info.seed + offset) % 2**32)
            self._seeded_for = info.seed

    def _attempt(
        self, pipeline: A.Compose, array: np.ndarray, ann: Annotation
    ) -> tuple[np.ndarray, Annotation, int] | None:
        """One random draw; None when it must be rejected (region lost, or every shape lost)."""
        if not _is_geometric(pipeline):
            return pipeline(image=array)["image"], copy.deepcopy(ann), 0
        h0, w0 = array.shape[:2]
        boxes = np.asarray(ann.get("boxes", []), dtype=np.float64).reshape(-1, 4)
        parts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in ann.get("polygons", [])]
        quads = [_clamp(np.asarray(q, dtype=np.float64).reshape(4, 2), w0, h0) for q in ann.get("quads", [])]
        region = ann.get("region")
        corners = []
        if region is not None:
            x1, y1, x2, y2 = _flat(_clamp(np.asarray(region, dtype=np.float64).reshape(2, 2), w0, h0))
            corners = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])]
        shapes = [*parts, *quads, *corners]
        keypoints = np.concatenate(shapes) - 0.5 if shapes else np.zeros((0, 2))
        out = pipeline(image=array, bboxes=boxes, box_ids=list(range(len(boxes))), keypoints=keypoints)
        h, w = out["image"].shape[:2]
        moved_shapes: list[np.ndarray] = []
        if shapes:
            moved = np.asarray(out["keypoints"], dtype=np.float64).reshape(len(keypoints), -1)[:, :2] + 0.5
            moved_shapes = np.split(moved, np.cumsum([len(s) for s in shapes])[:-1])
        new_parts, new_quads = moved_shapes[: len(parts)], moved_shapes[len(parts) : len(parts) + len(quads)]

        new: dict[str, Any] = copy.deepcopy(dict(ann))
        for sizes in ("areas", "crowd_areas"):  # COCO's object areas (evaluation only) no longer hold
            new.pop(sizes, None)
        if region is not None:
            box = self._region(moved_shapes[-1], w, h)
            if box is None:
                return None
            new["region"] = box
        kept_ids = [int(round(i)) for i in out["box_ids"]]
        if "boxes" in ann:
            new["boxes"] = [_flat([b[:4]]) for b in np.asarray(out["bboxes"]).reshape(-1, 4)]
        if "polygons" in ann:
            new["polygons"] = [p for p in (self._polygon(p, w, h) for p in new_parts) if p is not None]
        kept_quads = [i for i, q in enumerate(new_quads) if self._quad_ok(q, w, h)]
        if "quads" in ann:
            new["quads"] = [self._quad(new_quads[i], quads[i], w, h) for i in kept_quads]
        _align(new, ann, {"boxes": kept_ids, "quads": kept_quads})

        total = len(boxes) + len(parts) + len(quads)
        kept = len(new.get("boxes", [])) + len(new.get("polygons", [])) + len(new.get("quads", []))
        if total and not kept:
            return None
        return out["image"], Annotation(**new), total - kept

    def _region(self, corners: np.ndarray, w: int, h: int) -> list[float] | None:
        """The region after the warp (bounding box of its corners, clipped); None if too much left the image."""
        x1, y1 = corners.min(axis=0)
        x2, y2 = corners.max(axis=0)
        full = (x2 - x1) * (y2 - y1)
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h)
        visible = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
        if visible <= 0 or visible < self.config.region_min_visibility * full:
            return None
        return _flat([(cx1, cy1), (cx2, cy2)])

    def _polygon(self, points: np.ndarray, w: int, h: int) -> list[float] | None:
        full = abs(polygon_area([tuple(p) for p in points]))
        clipped = clip_polygon([(float(x), float(y)) for x, y in points], w, h)
        area = abs(polygon_area(clipped)) if clipped else 0.0
        if area <= 0 or area < self.config.min_area or area < self.config.min_visibility * full:
            return None
        return _flat(clipped)

    def _quad_ok(self, corners: np.ndarray, w: int, h: int) -> bool:
        t = _QUAD_TOLERANCE
        inside = bool(
            ((corners[:, 0] >= -t) & (corners[:, 0] <= w + t) & (corners[:, 1] >= -t) & (corners[:, 1] <= h + t)).all()
        )
        area = abs(polygon_area([tuple(p) for p in corners]))
        return inside and area > 0 and area >= self.config.min_area

    @staticmethod
    def _quad(corners: np.ndarray, before: np.ndarray, w: int, h: int) -> list[float]:
        """Clamp the corners and, if the warp mirrored the quad, restore clockwise-from-top-left order."""
        corners = _clamp(corners, w, h)
        if polygon_area([tuple(p) for p in corners]) * polygon_area([tuple(p) for p in before]) < 0:
            corners = corners[list(_MIRROR)]
        return _flat(corners)


def _align(new: dict[str, Any], old: Annotation, kept: dict[str, list[int]]) -> None:
    """Keep `labels` and `scores` parallel to the boxes (or else quads) they belong to, by surviving index."""
    for field in ("labels", "scores"):
        values = old.get(field)
        if not values:
            continue
        for owner in ("boxes", "quads"):
            if owner in old and len(old[owner]) == len(values):  # type: ignore[literal-required]
                new[field] = [values[i] for i in kept[owner]]
                break


def _is_geometric(pipeline: A.Compose) -> bool:
    """Whether the pipeline moves pixels (and so was built with bbox and keypoint processors)."""
    return "bboxes" in pipeline.processors


def _pipeline(config: AugmentConfig, *, flip: bool, warp: bool, seed: int | None) -> A.Compose:
    """The albumentations Compose for `config` (imported lazily: albumentations takes ~2 s to import)."""
    import albumentations as A
    import cv2

    transforms: list[Any] = []
    if flip:
        transforms.append(A.HorizontalFlip(p=config.hflip))
    if warp and (config.scale != (1.0, 1.0) or config.translate or config.rotate_degrees):
        t, r = config.translate, config.rotate_degrees
        transforms.append(
            A.Affine(
                scale=config.scale,
                keep_ratio=True,
                translate_percent={"x": (-t, t), "y": (-t, t)},
                rotate=(-r, r),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0,
            )
        )
    if config.color_jitter or config.hue:
        c = config.color_jitter
        transforms.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=config.hue, p=1.0))
    if not any(isinstance(t, A.HorizontalFlip | A.Affine) for t in transforms):
        # no geometry: without processors albumentations does not warn about unused bbox/keypoint params
        return A.Compose(transforms, seed=seed)
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["box_ids"],
            min_area=config.min_area,
            min_visibility=config.min_visibility,
            clip=True,
            filter_invalid_bboxes=True,
        ),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        seed=seed,
    )


def build_augmentation(config: AugmentConfig, seed: int | None = None) -> Augmentation | None:
    """The augmentation for a recipe's `data.augment`, or None when it is off or changes nothing.

    `seed` makes the draws reproducible in the main process; DataLoader workers reseed from torch.
    """
    if not config.active:
        return None
    return Augmentation(config, seed=seed)
