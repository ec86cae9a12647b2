"""Per-box confidence from the probabilities of the generated tokens.

COCO mAP ranks detections by score; giving every box 1.0 (what most Florence-2 trainers do) turns
the precision-recall curve into a single point and under-reports mAP. A box's score here is the
mean probability of its four `<loc_N>` tokens and of the label tokens written before them.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from f2tune.eval.generate import Generation
from f2tune.locs import NUM_BINS, ImageSize
from f2tune.tasks import TaskSpec, parse_output
from f2tune.tasks.schema import Annotation

BOX_TOKENS = 4


def box_scores(
    token_ids: Sequence[int], probabilities: Sequence[float], loc_ids: set[int], skip_ids: set[int]
) -> list[float]:
    """One score per complete box, in generation order.

    A label may own several boxes (phrase grounding: `phrase<loc>x4<loc>x4`); each gets the mean
    of the label's token probabilities and its own four. A run of fewer than four location tokens
    (a truncated box) yields no score, as the parsers yield no box for it.
    """
    scores: list[float] = []
    label: list[float] = []
    locs: list[float] = []
    after_box = False
    for token, probability in zip(token_ids, probabilities):
        if token in skip_ids:
            continue
        if token in loc_ids:
            locs.append(probability)
            if len(locs) == BOX_TOKENS:
                parts = label + locs
                scores.append(sum(parts) / len(parts))
                locs, after_box = [], True
            continue
        if after_box or locs:  # a new label starts after a box (or after an abandoned partial one)
            label, locs, after_box = [], [], False
        label.append(probability)
    return scores


def special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[set[int], set[int]]:
    """The `<loc_N>` token ids and the ids to skip (`<s>`, `</s>`, padding) of a Florence-2 tokenizer."""
    locs = set(tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(NUM_BINS)]))
    skip = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return locs, skip


def with_box_scores(annotation: Annotation, generation: Generation, ids: tuple[set[int], set[int]]) -> Annotation:
    """`annotation` with `scores` for its boxes. When the parser kept a different number of boxes
    than the token walk found (malformed output), every box gets the output's mean probability."""
    boxes = annotation.get("boxes")
    if not boxes:
        return annotation
    if generation.probabilities is None:
        raise ValueError("box scores need the tokens' probabilities: generate(..., with_probabilities=True)")
    scores = box_scores(generation.token_ids, generation.probabilities, *ids)
    if len(scores) != len(boxes):
        mean = sum(generation.probabilities) / max(len(generation.probabilities), 1)
        scores = [mean] * len(boxes)
    return {**annotation, "scores": scores}


def parse_generation(
    spec: TaskSpec, generation: Generation, image_size: ImageSize, ids: tuple[set[int], set[int]]
) -> Annotation:
    """The structured answer in `generation`, with box scores where the task answers with boxes
    (only those tasks generate with token probabilities)."""
    annotation = parse_output(spec, generation.text, image_size)
    return with_box_scores(annotation, generation, ids) if spec.answers_with_boxes else annotation
