"""Plane geometry of polygons in continuous pixel coordinates (y down), for augmentation.

Albumentations moves a polygon's corners as independent keypoints and knows nothing of the shape
they bound, so the area kept and the part left inside the image after a warp are computed here.
"""

from __future__ import annotations

import numpy as np

Point = tuple[float, float]


def polygon_area(points: list[Point]) -> float:
    """Signed shoelace area; positive when the points run clockwise on screen (y down)."""
    n = len(points)
    return 0.5 * sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))


def clip_polygon(points: list[Point], width: float, height: float) -> list[Point]:
    """The part of a polygon inside [0, width] x [0, height] (Sutherland-Hodgman, one edge at a time)."""
    for axis, bound, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if not points:
            break

        def inside(p: Point, axis: int = axis, bound: float = bound, keep_below: bool = keep_below) -> bool:
            return p[axis] <= bound if keep_below else p[axis] >= bound

        def cross(a: Point, b: Point, axis: int = axis, bound: float = bound) -> Point:
            t = (bound - a[axis]) / (b[axis] - a[axis])
            return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))

        out: list[Point] = []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
        points = out
    deduped = [p for i, p in enumerate(points) if not np.allclose(p, points[i - 1])]
    return deduped if len(deduped) >= 3 else []
