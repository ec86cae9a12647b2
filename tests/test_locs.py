"""The `<loc_N>` codec: the bin rule, its errors, and parity with `Florence2Processor`'s parsers."""

from __future__ import annotations

import math
import re
import string

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import box, points

from f2tune.errors import DataError
from f2tune.locs import (
    box_to_text,
    dequantize,
    polygon_to_text,
    quad_to_text,
    quantize,
    text_to_bins,
)

SIZES = st.tuples(st.integers(1, 4000), st.integers(1, 4000))
LABELS = st.text(string.ascii_letters + string.digits + " ", min_size=1, max_size=12).filter(str.strip)


def assert_processor_pixels(ours: list[float], theirs: list[int]) -> None:
    """The processor truncates a float32 product to int: floor of ours, or one less at an integer."""
    assert len(ours) == len(theirs)
    for mine, its in zip(ours, theirs):
        assert math.floor(mine - 1e-3) <= its <= math.floor(mine + 1e-3), (mine, its)


def test_edges_and_bin_centres():
    assert quantize([0, 0, 640, 480], (640, 480)) == [0, 0, 999, 999]
    assert quantize([0.639, 0.64], (640, 480)) == [0, 1]
    assert dequantize([0, 999], (1000, 2000)) == [0.5, 1999.0]
    assert quantize([-5, 1e9], (10, 10)) == [0, 999]
    assert quantize([-1e306, 1e306], (1000, 1000)) == [0, 999]  # x 1000 overflowed to inf: OverflowError


def test_exact_bin_edges_are_not_lost_to_float_error():
    # 17 / (34 / 1000) is 499.99999999999994 in floats; the bin is 500 exactly.
    assert quantize([17, 17], (34, 34)) == [500, 500]


@settings(max_examples=300, deadline=None)
@given(SIZES, st.data())
def test_quantize_is_the_processor_rule(processor, size, data):
    coords = data.draw(points(size, 4))
    theirs = processor.post_processor.quantize(torch.tensor(coords, dtype=torch.float64).reshape(-1, 2), size)
    for i, (mine, its) in enumerate(zip(quantize(coords, size), theirs.flatten().tolist())):
        scaled = coords[i] * 1000 / size[i % 2]
        on_bin_edge = abs(scaled - round(scaled)) < 1e-6  # where the processor's x / (W/1000) can fall short
        assert mine == its or (on_bin_edge and mine == its + 1), (coords[i], mine, its)


@settings(max_examples=300, deadline=None)
@given(SIZES, st.data())
def test_round_trip_within_half_a_bin(size, data):
    coords = data.draw(points(size, 3))
    back = dequantize(quantize(coords, size), size)
    for i, (value, again) in enumerate(zip(coords, back)):
        assert abs(value - again) <= size[i % 2] / 2000 + 1e-9


@settings(max_examples=150, deadline=None)
@given(SIZES, st.data())
def test_boxes_parse_like_the_processor(processor, size, data):
    boxes = data.draw(st.lists(box(size), min_size=1, max_size=4))
    labels = data.draw(st.lists(LABELS, min_size=len(boxes), max_size=len(boxes)))
    text = "".join(label + box_to_text(b, size) for label, b in zip(labels, boxes))
    parsed = processor.post_process_generation(f"</s><s>{text}</s>", task="<OD>", image_size=size)["<OD>"]
    assert parsed["labels"] == [label.strip() for label in labels]
    for b, theirs in zip(boxes, parsed["bboxes"]):
        assert_processor_pixels(dequantize(quantize(b, size), size), theirs)


@settings(max_examples=150, deadline=None)
@given(SIZES, st.data())
def test_polygons_parse_like_the_processor(processor, size, data):
    polygons = data.draw(st.lists(st.integers(3, 8).flatmap(lambda n: points(size, n)), min_size=1, max_size=3))
    text = "<sep>".join(polygon_to_text(p, size) for p in polygons)
    task = "<REFERRING_EXPRESSION_SEGMENTATION>"
    (parsed,) = processor.post_process_generation(text, task=task, image_size=size)[task]["polygons"]
    assert len(parsed) == len(polygons)
    for polygon, theirs in zip(polygons, parsed):
        assert_processor_pixels(dequantize(quantize(polygon, size), size), theirs)


@settings(max_examples=150, deadline=None)
@given(SIZES, st.data())
def test_quads_parse_like_the_processor(processor, size, data):
    quads = data.draw(st.lists(points(size, 4), min_size=1, max_size=4))
    labels = data.draw(st.lists(LABELS, min_size=len(quads), max_size=len(quads)))
    text = "".join(label + quad_to_text(q, size) for label, q in zip(labels, quads))
    parsed = processor.post_process_generation(text, task="<OCR_WITH_REGION>", image_size=size)["<OCR_WITH_REGION>"]
    assert parsed["labels"] == [label.strip() for label in labels]
    for quad, theirs in zip(quads, parsed["quad_boxes"]):
        assert_processor_pixels(dequantize(quantize(quad, size), size), theirs)


def test_text_to_bins_clamps_what_no_token_can_name():
    assert text_to_bins("a<loc_5><loc_1000><loc_" + "9" * 5000 + "><loc_0007><loc_3") == [5, 999, 999, 7]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: box_to_text([10, 0, 5, 5], (20, 20)), "x2 < x1"),
        (lambda: box_to_text([0, 0, 5], (20, 20)), "4 numbers"),
        (lambda: polygon_to_text([0, 0, 5, 5], (20, 20)), "at least 3 points"),
        (lambda: polygon_to_text([0, 0, 5, 5, 1], (20, 20)), "even length"),
        (lambda: quad_to_text([0] * 7, (20, 20)), "8 numbers"),
        (lambda: quantize([0, 0], (0, 20)), "positive"),
        (lambda: quantize([0, 0], (20,)), "(width, height)"),
        (lambda: quantize([float("nan"), 0], (20, 20)), "finite"),
        (lambda: box_to_text([0, 0, "5", None], (20, 20)), "coordinate 3 is None"),
    ],
)
def test_bad_input_is_a_data_error(call, message):
    with pytest.raises(DataError, match=re.escape(message)):
        call()
