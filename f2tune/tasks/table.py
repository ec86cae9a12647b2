"""The one table of Florence-2 tasks: prompt, target text, output parser, metric and decoding.

Everything task-specific in f2tune reads this table, so adding or fixing a task is one row here
(plus a builder in `targets.py` and a parser in `parsers.py` for a new answer shape) instead of a
branch in every reader, collator and metric.

Free-text prompts (VQA, custom instructions) are the spec `CUSTOM`, keyed "" in `TASKS` like
`Sample.task`, so `TASKS[sample.task]` works for every sample.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from f2tune.errors import DataError
from f2tune.locs import ImageSize
from f2tune.tasks import parsers, targets
from f2tune.tasks.schema import Annotation
from f2tune.tasks.tokens import check_prompt

BOX_ANSWERS = frozenset(
    {"description_with_bboxes", "bboxes", "phrase_grounding", "description_with_bboxes_or_polygons"}
)
"""The processor's parse types whose answers are boxes (the tasks whose boxes get confidence scores)."""

InputKind = Literal["none", "query", "region"]
"""What follows the task token: nothing, the annotation's `query` text, or its `region` box."""


@dataclass(frozen=True)
class TaskSpec:
    """How one task is prompted, answered, parsed, scored and decoded.

    `post_processing` is the processor's parse type for the task
    (`Florence2Processor.tasks_answer_post_processing_type`), kept to test parity against it.
    Decoding: Florence-2's default is 3 beams; `no_repeat_ngram_size` must be 0 wherever the answer
    has `<loc_N>` tokens (a box repeats coordinates: `<loc_0><loc_0>` is a valid 2-gram twice), and
    `max_new_tokens` is sized per task so validation does not generate 1024 tokens for a caption.
    """

    token: str
    input: InputKind
    target: Callable[[Annotation, ImageSize, str], str] = field(repr=False)
    parse: Callable[[str, ImageSize], Annotation] = field(repr=False)
    post_processing: str
    metric: str
    max_new_tokens: int
    num_beams: int = 3
    no_repeat_ngram_size: int = 0

    @property
    def name(self) -> str:
        """The token, or a readable name for free-text prompts (used in error messages)."""
        return self.token or "free-text prompt"

    @property
    def answers_with_boxes(self) -> bool:
        """Whether parsed answers hold `boxes`: only these need the generated tokens' probabilities
        (box scores), so the others skip the decoder pass that computes them."""
        return self.post_processing in BOX_ANSWERS

    @property
    def answers_with_regions(self) -> bool:
        """Whether answers hold regions (boxes, polygons or quads) rather than text alone."""
        return self.post_processing != "pure_text"

    def generation_kwargs(self) -> dict[str, int]:
        """Keyword arguments for `model.generate` on this task."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }


def _caption(token: str, max_new_tokens: int) -> TaskSpec:
    return TaskSpec(
        token, "none", targets.text_target, parsers.parse_text, "pure_text", "cider", max_new_tokens,
        no_repeat_ngram_size=3,
    )  # fmt: skip


# token, input, target builder, output parser, processor parse type, metric, max_new_tokens
_SPECS = (
    _caption("<CAPTION>", 64),
    _caption("<DETAILED_CAPTION>", 128),
    _caption("<MORE_DETAILED_CAPTION>", 256),
    TaskSpec("<OD>", "none", targets.boxes_target, parsers.parse_boxes, "description_with_bboxes", "coco_map", 512),
    TaskSpec(
        "<DENSE_REGION_CAPTION>", "none", targets.boxes_target, parsers.parse_boxes,
        "description_with_bboxes", "coco_map", 512,
    ),
    TaskSpec(
        "<REGION_PROPOSAL>", "none", targets.proposals_target, parsers.parse_proposals, "bboxes", "coco_map", 512
    ),
    TaskSpec("<OCR>", "none", targets.ocr_text_target, parsers.parse_text, "pure_text", "cer", 512),
    TaskSpec("<OCR_WITH_REGION>", "none", targets.quads_target, parsers.parse_quads, "ocr", "cer", 1024),
    TaskSpec(
        "<CAPTION_TO_PHRASE_GROUNDING>", "query", targets.boxes_target, parsers.parse_boxes,
        "phrase_grounding", "grounding_acc", 256,
    ),
    TaskSpec(
        "<REFERRING_EXPRESSION_SEGMENTATION>", "query", targets.polygons_target, parsers.parse_polygons,
        "polygons", "miou", 512,
    ),
    TaskSpec(
        "<REGION_TO_SEGMENTATION>", "region", targets.polygons_target, parsers.parse_polygons,
        "polygons", "miou", 512,
    ),
    TaskSpec(
        "<OPEN_VOCABULARY_DETECTION>", "query", targets.boxes_target, parsers.parse_boxes_or_polygons,
        "description_with_bboxes_or_polygons", "coco_map", 256,
    ),
    TaskSpec(
        "<REGION_TO_CATEGORY>", "region", targets.region_text_target, parsers.parse_region_text,
        "pure_text", "exact_match", 24,
    ),
    TaskSpec(
        "<REGION_TO_DESCRIPTION>", "region", targets.region_text_target, parsers.parse_region_text,
        "pure_text", "cider", 64,
    ),
    TaskSpec(
        "<REGION_TO_OCR>", "region", targets.text_target, parsers.parse_region_text, "pure_text", "cer", 128
    ),
)  # fmt: skip

CUSTOM = TaskSpec("", "query", targets.text_target, parsers.parse_text, "pure_text", "vqa_accuracy", 64)
"""Free-text prompts (VQA and custom instructions): the prompt is the annotation's `query`."""

TASKS: dict[str, TaskSpec] = {spec.token: spec for spec in (*_SPECS, CUSTOM)}
"""The 15 Florence-2 task tokens, and "" for free-text prompts."""

_TOKEN_AT_START = re.compile(r"<[A-Z][A-Z_]*>")


def task_of(prompt: str) -> TaskSpec:
    """The task a prompt asks for: its leading task token's spec, or `CUSTOM` for free text.

    Raises `DataError` for what `check_prompt` refuses (an unknown token, text after a no-input token).
    """
    reason = check_prompt(prompt)
    if reason is not None:
        raise DataError(reason)
    match = _TOKEN_AT_START.match(prompt.strip())
    return TASKS[match.group(0)] if match else CUSTOM


def _spec(task: str | TaskSpec) -> TaskSpec:
    if isinstance(task, TaskSpec):
        return task
    if task not in TASKS:
        known = ", ".join(token for token in TASKS if token)
        raise DataError(f"unknown task {task!r}; known tasks: {known}, or '' for a free-text prompt")
    return TASKS[task]


def build_prompt(task: str | TaskSpec, annotation: Annotation, image_size: ImageSize) -> str:
    """The prompt for `task`: the token, followed by the annotation's `query` or `region` if it takes one.

    `image_size` (width, height) places the region's location tokens. For free-text prompts the
    `query` is the whole prompt; one that starts with a task token is refused (it is not free text).
    """
    spec = _spec(task)
    if spec.input == "none":
        return spec.token
    if spec.input == "region":
        return spec.token + targets.region_tokens(annotation, image_size, spec.name)
    query = targets.text_field(annotation, "query", spec.name)
    if spec is CUSTOM and task_of(query) is not CUSTOM:
        raise DataError(f"free-text prompt {query!r} starts with a task token; give that task instead")
    task_of(spec.token + query)  # a task token inside the query (`a cat <OD>`) is refused
    return spec.token + query


def format_target(task: str | TaskSpec, annotation: Annotation, image_size: ImageSize) -> str:
    """The text Florence-2 should generate for `annotation` (pixel coordinates, image (width, height))."""
    spec = _spec(task)
    return spec.target(annotation, image_size, spec.name)


def parse_output(task: str | TaskSpec, text: str, image_size: ImageSize) -> Annotation:
    """The structured answer in a generation; any text parses (garbled parts are skipped)."""
    return _spec(task).parse(text, image_size)
