"""Hypothesis strategies for image coordinates, shared by the codec and task-table tests."""

from __future__ import annotations

from hypothesis import strategies as st


def coordinate(limit: int) -> st.SearchStrategy[float]:
    """Pixel values in [0, limit], with the edges and whole pixels drawn often."""
    return st.one_of(st.sampled_from([0.0, float(limit)]), st.integers(0, limit).map(float), st.floats(0, limit))


@st.composite
def box(draw: st.DrawFn, size: tuple[int, int]) -> list[float]:
    """x1 <= x2, y1 <= y2 inside a (width, height) image."""
    x1, x2 = sorted(draw(coordinate(size[0])) for _ in range(2))
    y1, y2 = sorted(draw(coordinate(size[1])) for _ in range(2))
    return [x1, y1, x2, y2]


def points(size: tuple[int, int], count: int) -> st.SearchStrategy[list[float]]:
    """`count` x, y pairs as one flat list (polygons, quads)."""
    return st.tuples(*(coordinate(size[i % 2]) for i in range(2 * count))).map(list)
