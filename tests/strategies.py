"""Hypothesis strategies for image coordinates and task annotations, shared by the codec and task tests."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from f2tune.tasks import TaskSpec


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


WORDS = st.text(string.ascii_letters + string.digits + " ,.'-", min_size=1, max_size=20).filter(str.strip)


@st.composite
def annotation(draw: st.DrawFn, spec: TaskSpec, size: tuple[int, int]) -> dict:
    """A random, valid annotation for `spec`'s answer shape, with its input field."""
    ann: dict = {}
    if spec.input == "query":
        ann["query"] = draw(WORDS)
    if spec.input == "region":
        ann["region"] = draw(box(size))
    shape = spec.target.__name__
    if shape in ("text_target", "region_text_target"):
        ann["text"] = draw(WORDS)
    elif shape == "ocr_text_target":  # an image without text answers nothing
        ann["text"] = draw(st.one_of(st.just(""), WORDS))
    elif shape == "polygons_target":
        ann["polygons"] = draw(st.lists(st.integers(3, 8).flatmap(lambda n: points(size, n)), min_size=1, max_size=3))
    else:
        kind = "quads" if shape == "quads_target" else "boxes"
        shapes = draw(st.lists(points(size, 4) if kind == "quads" else box(size), min_size=1, max_size=5))
        ann[kind] = shapes
        if shape != "proposals_target":  # few distinct labels, so runs of one label occur
            ann["labels"] = draw(
                st.lists(st.one_of(st.sampled_from(["cat", "cat "]), WORDS), min_size=len(shapes), max_size=len(shapes))
            )
    return ann
