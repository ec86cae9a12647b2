"""Checks of a prompt and answer written as text (JSONL, dataset columns) against their task, for
the mistakes that would otherwise train without an error:

- `<loc_N>` with N beyond 999 (or anything but a plain number) is no token: the tokenizer spells
  `<loc_1000>` out in pieces, and the model learns to write those instead of a location;
- a box task's answer whose location tokens do not come in fours (eights for OCR quads; for
  polygons, pairs of at least three points; for open-vocabulary detection, which answers with
  either, pairs of at least two) parses back into fewer shapes than were meant, so the metrics
  score the model against an answer nobody wrote;
- a task that reads an input (a caption, an expression, a region's four locations) given none:
  the processor would ask the model about an empty phrase.

Structured formats build their locations from pixels (`f2tune.tasks.targets`); their text fields
(captions, labels, answers, queries, OCR lines) still get the first check and the special tokens'
(`check_built_text`).
"""

from __future__ import annotations

import re

from f2tune.tasks.table import CUSTOM, TaskSpec

_LOC_LIKE = re.compile(r"<loc_([^<>]*)>")
_LOC_RUN = re.compile(r"(?:<loc_\d+>)+")
_REGION = re.compile(r"(?:<loc_\d+>){4}")
_BOX = (4, "box (x1, y1, x2, y2)")
_LOCS_PER_SHAPE = {
    "<OD>": _BOX,
    "<DENSE_REGION_CAPTION>": _BOX,
    "<REGION_PROPOSAL>": _BOX,
    "<CAPTION_TO_PHRASE_GROUNDING>": _BOX,
    "<OCR_WITH_REGION>": (8, "quad (four x, y corners)"),
}
_POLYGON_TASKS = ("<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>")
SPECIAL_TOKENS = ("</s>", "<s>", "<pad>", "<unk>", "<mask>", "<image>")
"""Florence-2's tokenizer's control tokens (BART's, and the image's place in the input)."""
_SHOWN = 80
"""Characters of a target quoted in a message."""


def check_text_sample(spec: TaskSpec, prompt: str, target: str) -> str | None:
    """Why this prompt/target pair would train something other than what was meant, or None."""
    return check_built_text(prompt, target) or _missing_input(spec, prompt) or _bad_shapes(spec, target)


def check_built_text(prompt: str, target: str) -> str | None:
    """Why a prompt and target built from a structured annotation would train other text than its
    fields hold, or None: a caption, label or OCR line with `</s>` taught the model to stop there,
    one with `<loc_1000>` to spell out a location that is no token (`jsonl` refused both; the
    structured formats trained them)."""
    return (
        _special_token(prompt, "the prompt")
        or _special_token(target, "the target")
        or _bad_location(prompt, "the prompt")
        or _bad_location(target, "the target")
    )


def _special_token(text: str, what: str) -> str | None:
    """The tokenizer reads these as its control tokens, wherever they stand: a `</s>` inside a
    target would teach the model to stop there, a `<pad>` or `<image>` would be no text at all."""
    found = next((token for token in SPECIAL_TOKENS if token in text), None)
    if found is None:
        return None
    return (
        f"{what} has {found}, one of the tokenizer's special tokens, which it would read as that token, "
        f"not as text: remove it ({text[:_SHOWN]!r})"
    )


def _bad_location(text: str, what: str) -> str | None:
    for match in _LOC_LIKE.finditer(text):
        number = match.group(1)
        if not (number.isdigit() and str(int(number)) == number and int(number) <= 999):
            return (
                f"{what} has {match.group(0)}, which is no location token: Florence-2's are <loc_0> to "
                "<loc_999> (bins of a thousandth of the image's width or height): write a location as one, or "
                "remove it"
            )
    return None


def _missing_input(spec: TaskSpec, prompt: str) -> str | None:
    if spec is CUSTOM:
        return None
    given = prompt.strip()[len(spec.token) :].strip()
    if spec.input == "query" and not given:
        return f"task token {spec.token} reads text after it (what to find), but the prompt has none: {prompt!r}"
    if spec.input == "region" and not _REGION.fullmatch(given):
        return (
            f"task token {spec.token} reads a region after it, four location tokens <loc_x1><loc_y1><loc_x2>"
            f"<loc_y2>, but the prompt has {given!r}"
        )
    return None


def _bad_shapes(spec: TaskSpec, target: str) -> str | None:
    runs = [run.count("<loc_") for run in _LOC_RUN.findall(target)]
    if spec.token in _LOCS_PER_SHAPE:
        per_shape, shape = _LOCS_PER_SHAPE[spec.token]
        if not runs:
            what = f"{spec.token} answers have {per_shape} location tokens per {shape}"
            return f"{what}; this one has none: {_short(target)}"
        odd = next((n for n in runs if n % per_shape), None)
        if odd is not None:
            return (
                f"{spec.token} answers have {per_shape} location tokens per {shape}, but a run of {odd} stands "
                f"here: {_short(target)}"
            )
    if spec.token in _POLYGON_TASKS:
        if not runs:
            return f"{spec.token} answers are polygons of location tokens; this one has none: {_short(target)}"
        odd = next((n for n in runs if n % 2 or n < 6), None)
        if odd is not None:
            return (
                f"{spec.token} answers are polygons of x, y pairs, at least 3 points (6 location tokens) each, "
                f"but one has {odd}: {_short(target)}"
            )
    if spec.token == "<OPEN_VOCABULARY_DETECTION>":
        odd = next((n for n in runs if n % 2 or n < 4), None)
        if odd is not None:
            return (
                f"{spec.token} answers are boxes (4 location tokens) or polygons (x, y pairs), but a run of {odd} "
                f"stands here: {_short(target)}"
            )
    return None


def _short(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")
