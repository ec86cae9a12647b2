"""Polygon geometry used by augmentation: clipping to the image and the shoelace area."""

from __future__ import annotations

from f2tune.data.polygons import clip_polygon, polygon_area


def test_clip_polygon() -> None:
    assert clip_polygon([(-10.0, 0.0), (10.0, 0.0), (10.0, 10.0), (-10.0, 10.0)], 100, 100) == [
        (0.0, 0.0),
        (10.0, 0.0),
        (10.0, 10.0),
        (0.0, 10.0),
    ]
    assert clip_polygon([(-10.0, 0.0), (-5.0, 0.0), (-5.0, 5.0)], 100, 100) == []


def test_polygon_area_is_positive_clockwise_on_screen() -> None:
    square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]  # right, then down: clockwise with y down
    assert polygon_area(square) == 100.0
    assert polygon_area(square[::-1]) == -100.0
