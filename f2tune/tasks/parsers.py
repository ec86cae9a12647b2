"""Output parsers: generated text -> a structured `Annotation`, for any text, never raising.

They follow `Florence2PostProcessor`'s regular expressions (so well-formed outputs parse to the same
objects; `tests/tasks/test_table.py` checks it) but need no processor, run on truncated or garbled
generations from an early checkpoint without failing, and differ where the processor's result is
worse for metrics:

- coordinates are bin centres as floats; the processor truncates them to whole pixels;
- labels keep non-ASCII characters (the processor drops them: `café` -> `caf`);
- a label with a line break before its locs keeps its boxes (the processor drops them);
- `<pad>` is removed from text answers too (batched generations end in it);
- `<REGION_TO_*>` text answers lose the echoed region's `<loc_N>` tokens (the processor keeps them);
- grounding keeps every phrase (the released processor config drops pronouns such as "it");
- polygon parts with fewer than 3 points and `<loc_N>` numbers above 999 (clamped) cannot break
  mask metrics;
- a box written right to left or bottom to top has its corners put in order (the processor keeps
  x2 < x1, an area below zero that COCO's evaluation leaves out of every size range: a wrong box
  that cost nothing);
- a label after a cut-short box or after a box of its own is the label alone (the processor's
  phrase pattern may start inside the location token before it: `loc_3>dog`).
"""

from __future__ import annotations

import re

from f2tune.locs import LOC_PATTERN, ImageSize, dequantize, text_to_bins
from f2tune.tasks.schema import Annotation, Box, Polygon

# The processor's patterns, plus a look-behind on the phrase patterns: a match can only start where
# the one before ended or after a character the phrase cannot extend over, so trying every other
# start (quadratic on a long garbled generation: 0.35 s for 5000 characters) finds nothing more.
_SPECIAL = re.compile(r"</?s>|<pad>")
_PHRASE_BOXES = re.compile(r"(?<![^<>])([^<]+)((?:<loc_\d+>){4,})")
_BOX_RUN = re.compile(r"(?:<loc_\d+>){4,}")
_OCR_LINE = re.compile(r"(?<![^\n>])(.+?)((?:<loc_\d+>){8})")
_POLY_TOKENS = r"(?:<loc_\d+>|<sep>|<poly>|</poly>)"
_POLY_RUN = re.compile(_POLY_TOKENS + "{4,}")
_PHRASE_POLYS = re.compile(r"(?<![^<>])([^<]+)(" + _POLY_TOKENS + "{4,})")
_POLY_INSTANCE = re.compile(r"<poly>(.*?)</poly>")
_POLY_PART = re.compile(r"((?:<loc_\d+>)+)(?:<sep>|$)")
_TOKEN_REMNANT = re.compile(r"^(?:/?(?:loc_\d+|poly|sep)>)+")
"""The end of a location or polygon token that a phrase match started inside of."""


def clean(text: str) -> str:
    """Text without the `<s>`, `</s>` and `<pad>` tokens that decoding with special tokens leaves."""
    return _SPECIAL.sub("", text)


def _groups(bins: list[int], size: int) -> list[list[int]]:
    """Whole groups of `size` bins; a truncated last group is dropped, as the processor does."""
    return [bins[i : i + size] for i in range(0, len(bins) - size + 1, size)]


def _boxes(locs: str, image_size: ImageSize) -> list[Box]:
    """Each whole group of 4 bins as a box, its corners in order (x1 <= x2, y1 <= y2)."""
    boxes = [dequantize(group, image_size) for group in _groups(text_to_bins(locs), 4)]
    return [[min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)] for x1, y1, x2, y2 in boxes]


def _label(phrase: str) -> str:
    """A phrase match as a label: without a token's end it may start with, and spaces."""
    return _TOKEN_REMNANT.sub("", phrase).strip()


def _polygon_instances(run: str, image_size: ImageSize) -> list[list[Polygon]]:
    """The polygon instances in a run of polygon tokens, each a list of parts.

    Like the processor: each `<poly>...</poly>` is an instance when both tokens occur, else the
    whole run is one; parts are loc runs ending at `<sep>` or the end; an odd last bin is dropped.
    Unlike it, parts of fewer than 3 points (which no mask metric can use) are dropped.
    """
    instances = _POLY_INSTANCE.findall(run) if "<poly>" in run and "</poly>" in run else [run]
    found = []
    for instance in instances:
        parts = [text_to_bins(part) for part in _POLY_PART.findall(instance)]
        polygons = [dequantize(bins[: len(bins) - len(bins) % 2], image_size) for bins in parts if len(bins) >= 6]
        if polygons:
            found.append(polygons)
    return found


def parse_text(text: str, image_size: ImageSize) -> Annotation:
    """Captions, OCR, free text: the answer with special tokens removed."""
    return Annotation(text=clean(text).strip())


def parse_region_text(text: str, image_size: ImageSize) -> Annotation:
    """`<REGION_TO_*>` answers: the text without the region the model echoes after it."""
    return Annotation(text=LOC_PATTERN.sub("", clean(text)).strip())


def parse_boxes(text: str, image_size: ImageSize) -> Annotation:
    """`label<4 locs>[<4 locs>...]` runs; every box of a run gets the run's label."""
    boxes, labels = [], []
    for phrase, locs in _PHRASE_BOXES.findall(clean(text)):
        for box in _boxes(locs, image_size):
            boxes.append(box)
            labels.append(_label(phrase))
    return Annotation(boxes=boxes, labels=labels)


def parse_proposals(text: str, image_size: ImageSize) -> Annotation:
    """Boxes from every run of 4 or more location tokens, ignoring any text between runs."""
    return Annotation(boxes=[box for run in _BOX_RUN.findall(clean(text)) for box in _boxes(run, image_size)])


def parse_boxes_or_polygons(text: str, image_size: ImageSize) -> Annotation:
    """`<OPEN_VOCABULARY_DETECTION>`: boxes; an answer written as `<poly>` polygons (the processor's
    other branch) gives each object the bounding box of its polygon points."""
    text = clean(text)
    if "<poly>" not in text:
        return parse_boxes(text, image_size)
    boxes, labels = [], []
    for phrase, run in _PHRASE_POLYS.findall(text):
        for parts in _polygon_instances(run, image_size):
            xs = [x for part in parts for x in part[0::2]]
            ys = [y for part in parts for y in part[1::2]]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
            labels.append(_label(phrase))
    return Annotation(boxes=boxes, labels=labels)


def parse_polygons(text: str, image_size: ImageSize) -> Annotation:
    """Segmentation: every polygon part in the answer, as parts of the one referred object."""
    instances = [parts for run in _POLY_RUN.findall(clean(text)) for parts in _polygon_instances(run, image_size)]
    return Annotation(polygons=[part for parts in instances for part in parts])


def parse_quads(text: str, image_size: ImageSize) -> Annotation:
    """`text<8 locs>` per OCR line."""
    quads, labels = [], []
    for line, locs in _OCR_LINE.findall(clean(text)):
        quads.append(dequantize(text_to_bins(locs), image_size))
        labels.append(line.strip())
    return Annotation(quads=quads, labels=labels)
