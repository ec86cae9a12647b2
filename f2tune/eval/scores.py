"""Per-box confidence from the probabilities of the generated tokens.

COCO mAP ranks detections by score; giving every box 1.0 (what most Florence-2 trainers do) turns
the precision-recall curve into a single point and under-reports mAP. A box's score here is the
mean probability of its four `<loc_N>` tokens and of the label tokens written before them.
"""

from __future__ import annotations

from collections.abc import Sequence

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
