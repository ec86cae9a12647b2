"""The `<loc_N>` codec: pixel coordinates <-> Florence-2's 1000 location bins per axis.

Florence-2 writes every coordinate as one of 1000 tokens per axis. The rule is the processor's
(`Florence2PostProcessor.quantize` / `dequantize`): bin = floor(x / (W/1000)) clamped to 0..999,
and a bin reads back as its centre, (bin + 0.5) * W/1000. Trainers that use `round(x/W*1000)`
instead emit `<loc_1000>` (no such token) for x = W and are half a bin off, so this module is the
only place in f2tune that converts.

Two deliberate differences from the processor, both at the level of float rounding:
- `quantize` computes floor(x * 1000 / W) rather than floor(x / (W / 1000)): for integer pixel
  coordinates that land exactly on a bin edge, `W / 1000` is inexact and the processor's form can
  fall one bin short (x = 17, W = 34 is bin 500 exactly; the processor's form gives 499).
- `dequantize` returns floats. The processor's `dequantize` ends in `.int()`, so
  `post_process_generation` returns whole pixels truncated from a float32 product: its value is
  `floor` of ours, except within float32 error of an integer, where it can be one less.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from f2tune.errors import DataError

NUM_BINS = 1000
"""Location bins per axis; the tokens are `<loc_0>` .. `<loc_999>`."""

ImageSize = tuple[float, float]
"""(width, height) in pixels, the order `post_process_generation` takes."""

LOC_PATTERN = re.compile(r"<loc_(\d+)>")
"""One location token; the number is captured."""


def _check_size(image_size: ImageSize) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise DataError(f"image_size must be (width, height), got {image_size!r}") from None
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise DataError(f"image_size must be two positive numbers (width, height), got {image_size!r}")
    return width, height


def _check_pairs(values: Sequence[float], what: str) -> None:
    if len(values) % 2:
        raise DataError(f"{what} must be a flat x, y, x, y, ... list (even length), got {len(values)} values")


def quantize(coords: Sequence[float], image_size: ImageSize) -> list[int]:
    """Bins for flat x, y, x, y, ... pixel coordinates; values outside the image clamp to 0 or 999."""
    _check_pairs(coords, "coordinates")
    sizes = _check_size(image_size)
    bins = []
    for i, value in enumerate(coords):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise DataError(f"coordinate {i} is {value!r}; coordinates must be numbers") from None
        if not math.isfinite(value):
            raise DataError(f"coordinate {i} is {value}; coordinates must be finite pixel values")
        value = min(max(value, 0.0), sizes[i % 2])  # the same bins, and 1e306 * 1000 does not overflow to inf
        bins.append(min(math.floor(value * NUM_BINS / sizes[i % 2]), NUM_BINS - 1))
    return bins


def dequantize(bins: Sequence[int], image_size: ImageSize) -> list[float]:
    """Pixel coordinates (bin centres) for flat x, y, x, y, ... bins."""
    _check_pairs(bins, "bins")
    sizes = _check_size(image_size)
    return [(int(b) + 0.5) * sizes[i % 2] / NUM_BINS for i, b in enumerate(bins)]


def bins_to_text(bins: Sequence[int]) -> str:
    """`<loc_a><loc_b>...` for bins already in 0..999."""
    return "".join(f"<loc_{int(b)}>" for b in bins)


def text_to_bins(text: str) -> list[int]:
    """Every `<loc_N>` number in `text`, in order, clamped to 0..999.

    No real token has N > 999, so a larger number can only come from a malformed generation
    spelled out of sub-word pieces; clamping keeps the coordinate inside the image instead of failing.
    """
    return [_bin(n) for n in LOC_PATTERN.findall(text)]


def _bin(digits: str) -> int:
    """A bin from a `<loc_N>` number, clamped, without converting a huge digit string (which
    `int` refuses beyond 4300 digits)."""
    digits = digits.lstrip("0") or "0"
    return NUM_BINS - 1 if len(digits) > 3 else min(int(digits), NUM_BINS - 1)


def box_to_text(box: Sequence[float], image_size: ImageSize) -> str:
    """Four location tokens for an x1, y1, x2, y2 box (x1 <= x2, y1 <= y2)."""
    if len(box) != 4:
        raise DataError(f"a box is x1, y1, x2, y2 (4 numbers), got {len(box)}: {list(box)!r}")
    bins = quantize(box, image_size)
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        raise DataError(f"box {list(box)!r} has x2 < x1 or y2 < y1; boxes are x1, y1, x2, y2 in pixels")
    return bins_to_text(bins)


def polygon_to_text(polygon: Sequence[float], image_size: ImageSize) -> str:
    """Location tokens for a flat x1, y1, x2, y2, ... polygon of at least 3 points."""
    _check_pairs(polygon, "a polygon")
    if len(polygon) < 6:
        raise DataError(f"a polygon needs at least 3 points (6 numbers), got {len(polygon)}: {list(polygon)!r}")
    return bins_to_text(quantize(polygon, image_size))


def quad_to_text(quad: Sequence[float], image_size: ImageSize) -> str:
    """Eight location tokens for an OCR quadrilateral x1, y1, ..., x4, y4."""
    if len(quad) != 8:
        raise DataError(f"a quad is 4 corners x1, y1, ..., x4, y4 (8 numbers), got {len(quad)}: {list(quad)!r}")
    return bins_to_text(quantize(quad, image_size))
