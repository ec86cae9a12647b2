"""Augmentation keeps boxes, polygons, quads and the region on the pixels they annotate."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.path import Path
from PIL import Image
from pydantic import ValidationError

from f2tune.config import AugmentConfig
from f2tune.data import transforms
from f2tune.data.polygons import polygon_area
from f2tune.data.transforms import build_augmentation, mentions_sides

W, H = 200, 100


def augment(seed: int = 0, **knobs: object) -> transforms.Augmentation:
    aug = build_augmentation(AugmentConfig(enabled=True, **knobs), seed=seed)
    assert aug is not None
    return aug


def mask_of(flat: list[float], size: tuple[int, int] = (W, H)) -> np.ndarray:
    """Pixels whose centre lies inside the polygon: the continuous-coordinate convention of f2tune
    (PIL's polygon fill also paints the right and bottom edges, one pixel too many)."""
    xs, ys = np.meshgrid(np.arange(size[0]) + 0.5, np.arange(size[1]) + 0.5)
    path = Path(np.asarray(flat, dtype=float).reshape(-1, 2))
    return path.contains_points(np.stack([xs.ravel(), ys.ravel()], axis=1)).reshape(size[1], size[0])


def drawn(flat: list[float]) -> Image.Image:
    """A white shape on black, so the test can check where the shape went."""
    return Image.fromarray(np.where(mask_of(flat)[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2))


def white(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def rect(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def test_off_or_identity_config_builds_nothing() -> None:
    assert build_augmentation(AugmentConfig()) is None
    assert build_augmentation(AugmentConfig(hflip=1.0)) is None  # not enabled
    assert build_augmentation(AugmentConfig(enabled=True)) is None  # enabled but every knob is identity


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        AugmentConfig(scale=(1.5, 1.0))
    with pytest.raises(ValidationError):
        AugmentConfig(hflip=1.5)
    with pytest.raises(ValidationError):
        AugmentConfig(flip=0.5)  # unknown key


def test_hflip_mirrors_boxes_polygons_quads_and_region() -> None:
    annotation = {
        "boxes": [[10.0, 20.0, 50.0, 40.0]],
        "labels": ["cup"],
        "scores": [0.9],
        "polygons": [[10.0, 10.0, 30.0, 10.0, 20.0, 30.0]],
        "region": [10.0, 20.0, 50.0, 40.0],
    }
    image, out, dropped = augment(hflip=1.0, min_area=0.0)(drawn(rect(10, 20, 50, 40)), annotation)
    assert dropped == 0
    assert out["boxes"] == [[W - 50.0, 20.0, W - 10.0, 40.0]]
    assert out["region"] == [W - 50.0, 20.0, W - 10.0, 40.0]
    assert out["labels"] == ["cup"] and out["scores"] == [0.9]
    assert sorted(zip(out["polygons"][0][::2], out["polygons"][0][1::2])) == [
        (170.0, 10.0),
        (180.0, 30.0),
        (190.0, 10.0),
    ]
    ys, xs = np.nonzero(white(image))
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (W - 50, W - 10, 20, 40)
    assert annotation["boxes"] == [[10.0, 20.0, 50.0, 40.0]]  # the input is not modified


def test_hflip_keeps_quads_clockwise_from_top_left() -> None:
    slanted = [10.0, 12.0, 60.0, 10.0, 62.0, 30.0, 12.0, 32.0]  # TL, TR, BR, BL
    _, out, _ = augment(hflip=1.0)(Image.new("RGB", (W, H)), {"quads": [slanted], "labels": ["TEXT"]})
    (quad,) = out["quads"]
    assert quad == [W - 60.0, 10.0, W - 10.0, 12.0, W - 12.0, 32.0, W - 62.0, 30.0]
    assert polygon_area([(quad[i], quad[i + 1]) for i in range(0, 8, 2)]) > 0  # clockwise on screen
    assert out["labels"] == ["TEXT"]


def test_zoom_maps_box_as_computed_by_hand() -> None:
    # scale 2 about the image centre (100, 50): x -> 2x - 100, y -> 2y - 50
    image, out, dropped = augment(scale=(2.0, 2.0))(
        drawn(rect(90, 40, 110, 60)), {"boxes": [[90.0, 40.0, 110.0, 60.0]]}
    )
    assert out["boxes"] == [[80.0, 30.0, 120.0, 70.0]] and dropped == 0
    ys, xs = np.nonzero(white(image))
    assert abs(xs.min() - 80) <= 1 and abs(xs.max() + 1 - 120) <= 1
    assert abs(ys.min() - 30) <= 1 and abs(ys.max() + 1 - 70) <= 1


def test_a_warp_leaves_out_the_object_areas_it_no_longer_matches() -> None:
    """COCO's object areas serve evaluation alone; scaled, they would no longer hold."""
    boxes = {"boxes": [[90.0, 40.0, 110.0, 60.0]], "areas": [350.0], "crowd_areas": []}
    _, out, _ = augment(scale=(2.0, 2.0))(drawn(rect(90, 40, 110, 60)), boxes)
    assert "areas" not in out and "crowd_areas" not in out


def test_partly_cut_box_is_clipped() -> None:
    # scale 2: [40, 30, 80, 50] -> [-20, 10, 60, 50], 3/4 of it stays visible
    _, out, dropped = augment(scale=(2.0, 2.0))(Image.new("RGB", (W, H)), {"boxes": [[40.0, 30.0, 80.0, 50.0]]})
    assert out["boxes"] == [[0.0, 10.0, 60.0, 50.0]] and dropped == 0


@pytest.mark.parametrize("seed", range(4))
def test_random_warp_keeps_shapes_on_the_drawn_pixels(seed: int) -> None:
    knobs = dict(hflip=0.5, scale=(0.8, 1.3), translate=0.1, rotate_degrees=20.0, min_visibility=0.0)
    triangle = [60.0, 20.0, 140.0, 30.0, 90.0, 80.0]
    image, out, _ = augment(seed=seed, **knobs)(drawn(triangle), {"polygons": [triangle]})
    assert iou(mask_of(out["polygons"][0], image.size), white(image)) > 0.9

    quad = [50.0, 30.0, 150.0, 25.0, 155.0, 70.0, 55.0, 75.0]
    image, out, _ = augment(seed=seed, **knobs)(drawn(quad), {"quads": [quad], "labels": ["w"]})
    if out["quads"]:  # a corner may leave the image: then the quad is dropped (checked below)
        (moved,) = out["quads"]
        assert iou(mask_of(moved, image.size), white(image)) > 0.9
        assert polygon_area([(moved[i], moved[i + 1]) for i in range(0, 8, 2)]) > 0

    image, out, _ = augment(seed=seed, **knobs)(drawn(rect(70, 30, 130, 70)), {"boxes": [[70.0, 30.0, 130.0, 70.0]]})
    x1, y1, x2, y2 = out["boxes"][0]
    ys, xs = np.nonzero(white(image))
    assert x1 - 1 <= xs.min() and xs.max() + 1 <= x2 + 1 and y1 - 1 <= ys.min() and ys.max() + 1 <= y2 + 1


def test_degenerate_items_are_dropped_counted_and_labels_follow() -> None:
    aug = augment(scale=(2.0, 2.0), min_area=16.0, min_visibility=0.3)
    image = Image.new("RGB", (W, H))
    boxes = [[90.0, 40.0, 110.0, 60.0], [0.0, 0.0, 20.0, 20.0], [100.0, 45.0, 101.0, 46.0], [60.0, 30.0, 80.0, 50.0]]
    _, out, dropped = aug(image, {"boxes": boxes, "labels": ["a", "corner", "tiny", "b"], "scores": [1, 2, 3, 4]})
    assert dropped == 2  # the corner box leaves the image, the tiny one is 4 px after the zoom
    assert out["labels"] == ["a", "b"] and out["scores"] == [1, 4]
    assert out["boxes"] == [[80.0, 30.0, 120.0, 70.0], [20.0, 10.0, 60.0, 50.0]]

    parts = [rect(90, 40, 110, 60), rect(0, 0, 20, 20), [100.0, 50.0, 101.0, 50.0, 100.0, 51.0], rect(40, 30, 60, 50)]
    _, out, dropped = aug(image, {"polygons": parts})
    assert dropped == 2
    assert out["polygons"] == [rect(80, 30, 120, 70), rect(0, 10, 20, 50)]  # the last part is clipped at x = 0

    quads = [rect(90, 40, 110, 60), rect(45, 40, 70, 60), rect(100, 48, 101, 49)]
    _, out, dropped = aug(image, {"quads": quads, "labels": ["KEEP", "CUT", "DOT"]})
    assert dropped == 2 and out["labels"] == ["KEEP"] and out["quads"] == [rect(80, 30, 120, 70)]


def test_draw_losing_everything_is_rejected_and_sample_returned_unchanged() -> None:
    annotation = {"boxes": [[0.0, 0.0, 20.0, 20.0]], "labels": ["corner"]}
    image, out, dropped = augment(scale=(2.0, 2.0), max_attempts=2)(drawn(rect(0, 0, 20, 20)), annotation)
    assert out == annotation and dropped == 0
    assert white(image)[:20, :20].all()


def test_region_must_survive_the_warp() -> None:
    aug = augment(scale=(2.0, 2.0))
    _, out, _ = aug(Image.new("RGB", (W, H)), {"region": [90.0, 40.0, 110.0, 60.0], "text": "a dot"})
    assert out == {"region": [80.0, 30.0, 120.0, 70.0], "text": "a dot"}
    lost = {"region": [0.0, 0.0, 40.0, 40.0], "text": "a corner"}
    _, out, dropped = aug(Image.new("RGB", (W, H)), lost)
    assert out == lost and dropped == 0


def test_side_words_disable_flip_unless_allowed() -> None:
    box = {"boxes": [[10.0, 20.0, 50.0, 40.0]]}
    image = Image.new("RGB", (W, H))
    aug = augment(hflip=1.0)
    assert aug(image, box, task_text="<OPEN_VOCABULARY_DETECTION>the LEFT cup")[1] == box
    assert aug(image, {**box, "query": "rightmost person"})[1]["boxes"] == box["boxes"]
    assert aug(image, {**box, "labels": ["left hand"]})[1]["boxes"] == box["boxes"]
    assert aug(image, {**box, "labels": ["bright lamp"]})[1]["boxes"] == [[150.0, 20.0, 190.0, 40.0]]
    _, out, _ = augment(hflip=1.0, allow_hflip_with_sides=True)(image, {**box, "query": "the left cup"})
    assert out == {"boxes": [[150.0, 20.0, 190.0, 40.0]], "query": "the left cup"}  # words are not swapped


def test_mentions_sides() -> None:
    assert mentions_sides("Left") and mentions_sides("the right-hand side") and mentions_sides("leftmost")
    assert not mentions_sides("bright copyright alright") and not mentions_sides("")


def test_color_only_changes_pixels_not_annotation() -> None:
    annotation = {"boxes": [[10.0, 20.0, 50.0, 40.0]], "labels": ["x"]}
    base = Image.new("RGB", (W, H), (120, 60, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, out, dropped = augment(color_jitter=0.5)(base, annotation)
    assert out == annotation and dropped == 0
    assert np.asarray(image).shape == (H, W, 3) and not np.array_equal(np.asarray(image), np.asarray(base))


def test_seeded_draws_repeat_and_workers_reseed(monkeypatch: pytest.MonkeyPatch) -> None:
    knobs = dict(hflip=0.5, scale=(0.7, 1.4), translate=0.2, rotate_degrees=30.0)
    annotation = {"boxes": [[60.0, 30.0, 140.0, 70.0]]}
    image = Image.new("RGB", (W, H))

    def draws(aug: transforms.Augmentation) -> list:
        return [aug(image, annotation)[1] for _ in range(5)]

    assert draws(augment(seed=3, **knobs)) == draws(augment(seed=3, **knobs))
    monkeypatch.setattr(transforms, "get_worker_info", lambda: SimpleNamespace(id=1, seed=1234))
    assert draws(augment(seed=3, **knobs)) == draws(augment(seed=4, **knobs))  # the worker seed wins
