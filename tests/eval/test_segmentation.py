"""Polygon mIoU / oIoU on shapes whose pixel counts are known by hand."""

from __future__ import annotations

import pytest

from f2tune.eval.metrics import build_metric
from f2tune.eval.metrics.segmentation import PolygonIoU, rasterize

SQUARE = [0, 0, 10, 0, 10, 10, 0, 10]  # pixels 0..9 x 0..9: 100 pixels
SHIFTED_SQUARE = [5, 0, 15, 0, 15, 10, 5, 10]  # overlaps SQUARE on 5 x 10 = 50 pixels
# half of SQUARE: the pixels whose centre (i + 0.5, j + 0.5) has x + y < 10, i.e. i + j <= 8: 45 (the ten
# centres on the slanted edge fall outside, as pycocotools draws COCO's masks)
TRIANGLE = [0, 0, 10, 0, 0, 10]
SIZE = (32, 24)  # width, height


def test_rasterize_counts_pixels_by_their_centre() -> None:
    assert rasterize([SQUARE], SIZE).shape == (24, 32)
    assert rasterize([SQUARE], SIZE).sum() == 100
    assert rasterize([TRIANGLE], SIZE).sum() == 45
    assert rasterize([SQUARE, [20, 0, 24, 0, 24, 2, 20, 2]], SIZE).sum() == 108  # two parts
    assert rasterize([[0, 0, 10, 10], [1, 2, 3]], SIZE).sum() == 0  # fewer than 3 points


def test_slanted_edges_add_no_rim() -> None:
    """A diamond of exact area 200 whose outline passes through no pixel centre: 200 pixels, as
    pycocotools counts them. PIL's filled outline counted 220."""
    diamond = [20.3, 10.1, 30.3, 20.1, 20.3, 30.1, 10.3, 20.1]
    assert rasterize([diamond], (40, 40)).sum() == 200


def test_miou_and_oiou_by_hand() -> None:
    metric = PolygonIoU()
    metric.update(
        [{"polygons": [SHIFTED_SQUARE]}, {"polygons": [TRIANGLE]}],
        [{"polygons": [SQUARE]}, {"polygons": [SQUARE]}],
        [SIZE, SIZE],
    )
    result = metric.compute()
    assert result["miou"] == pytest.approx((50 / 150 + 45 / 100) / 2)
    assert result["oiou"] == pytest.approx((50 + 45) / (150 + 100))


def test_polygons_are_clipped_to_the_image() -> None:
    metric = build_metric("miou")
    metric.update([{"polygons": [[-10, -10, 20, -10, 20, 20, -10, 20]]}], [{"polygons": [SQUARE]}], [(10, 10)])
    assert metric.compute() == {"miou": pytest.approx(1.0), "oiou": pytest.approx(1.0)}


def test_empty_answers() -> None:
    metric = PolygonIoU()
    metric.update([{}, {"polygons": []}], [{"polygons": [SQUARE]}, {"polygons": []}], [SIZE, SIZE])
    # a missed object scores 0; agreeing that there is nothing scores 1 and adds nothing to oIoU
    assert metric.compute() == {"miou": pytest.approx(0.5), "oiou": pytest.approx(0.0)}


def test_batches_and_processes_accumulate() -> None:
    """Two metrics merged as DDP sync merges them equal one metric that saw every sample."""
    whole, first, second = PolygonIoU(), PolygonIoU(), PolygonIoU()
    predictions = [{"polygons": [SHIFTED_SQUARE]}, {"polygons": [TRIANGLE]}]
    references = [{"polygons": [SQUARE]}] * 2
    whole.update(predictions, references, [SIZE, SIZE])
    first.update(predictions[:1], references[:1], [SIZE])
    second.update(predictions[1:], references[1:], [SIZE])
    first.merge_state(second)
    assert first.compute() == pytest.approx(whole.compute())
