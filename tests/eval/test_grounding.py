"""Acc@IoU0.5 of referring expressions and grounded captions (ANY-BOX and MERGED-BOXES), by hand."""

from __future__ import annotations

import pytest

from f2tune.eval.metrics import build_metric
from f2tune.eval.metrics.detection import GroundingAccuracy, MergedGroundingAccuracy, box_iou, enclosing_box
from f2tune.tasks.schema import Annotation


def test_box_iou_by_hand() -> None:
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_grounding_accuracy_uses_the_first_box() -> None:
    metric = GroundingAccuracy()
    reference: Annotation = {"boxes": [[0, 0, 10, 10]], "labels": ["the cat"]}
    metric.update(
        [
            {"boxes": [[0, 0, 10, 10]]},  # IoU 1
            {"boxes": [[0, 0, 10, 5]]},  # IoU 0.5: still correct
            {"boxes": [[0, 0, 10, 4.9]]},  # IoU 0.49
            {"boxes": [[50, 50, 60, 60], [0, 0, 10, 10]]},  # the right box is only second
            {"boxes": []},
        ],
        [reference] * 5,
    )
    assert metric.compute() == {"grounding_acc": pytest.approx(2 / 5)}


def test_grounding_accuracy_counts_each_phrase_of_a_grounded_caption() -> None:
    """Flickr30k Entities' Recall@1: per phrase, its first predicted box against any of its boxes."""
    metric = GroundingAccuracy()
    reference: Annotation = {
        "boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 40, 50, 50], [60, 60, 70, 70]],
        "labels": ["two dogs", "two dogs", "a ball", "the park"],
    }
    prediction: Annotation = {
        "boxes": [[60, 60, 70, 70], [20, 0, 30, 10], [0, 0, 10, 10], [41, 41, 50, 50]],
        "labels": ["a bench", "Two  Dogs", "two dogs", "a ball"],  # "the park" is not named
    }
    metric.update([prediction], [reference])
    assert metric.compute() == {"grounding_acc": pytest.approx(2 / 3)}  # over phrases, not samples
    metric.update([{"boxes": [], "labels": []}], [{"boxes": [[0, 0, 10, 10]], "labels": ["a cat"]}])
    assert metric.compute() == {"grounding_acc": pytest.approx(2 / 4)}


@pytest.mark.parametrize("metric_class", [GroundingAccuracy, MergedGroundingAccuracy])
def test_a_grounded_caption_with_one_boxed_phrase_is_matched_by_name(metric_class) -> None:
    """ "a man is standing in the snow": "the snow" has no reference box, but the model grounds it
    too, first. As a one-expression task (the first box, whatever its name) this scored 0."""
    reference: Annotation = {"boxes": [[100, 100, 300, 600]], "labels": ["a man"]}
    prediction: Annotation = {"boxes": [[0, 0, 999, 999], [100, 100, 300, 600]], "labels": ["the snow", "a man"]}
    by_name, first_box = metric_class(by_name=True), metric_class()
    for metric in (by_name, first_box):
        metric.update([prediction], [reference])
    assert (by_name.compute()[by_name.key], first_box.compute()[first_box.key]) == (1.0, 0.0)
    missing = metric_class(by_name=True)
    missing.update([{"boxes": [[100, 100, 300, 600]], "labels": ["a woman"]}], [reference])
    assert missing.compute()[missing.key] == 0.0  # a phrase the answer does not name is not found


def test_grounding_accuracy_merges_like_ddp() -> None:
    """Two processes' states summed (what DDP sync does) give the single-process mean."""
    first, second = build_metric("grounding_acc"), build_metric("grounding_acc")
    reference: Annotation = {"boxes": [[0, 0, 10, 10]]}
    first.update([{"boxes": [[0, 0, 10, 10]]}], [reference])
    second.update([{"boxes": []}, {"boxes": [[1, 1, 10, 10]]}], [reference, reference])
    first.merge_state(second)
    assert first.compute()["grounding_acc"] == pytest.approx(2 / 3)


def test_merged_grounding_accuracy_compares_enclosing_boxes() -> None:
    """MERGED-BOXES: a phrase of several objects is the box around them, answered by the box around
    the boxes the prediction names with it; ANY-BOX reads the same answers differently."""
    reference: Annotation = {
        "boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 40, 50, 50]],
        "labels": ["two dogs", "two dogs", "a ball"],
    }
    both_dogs: Annotation = {"boxes": [[0, 0, 10, 10], [20, 0, 30, 10]], "labels": ["two dogs", "two dogs"]}
    one_wide_box: Annotation = {"boxes": [[0, 0, 30, 10], [40, 40, 50, 50]], "labels": ["two dogs", "a ball"]}
    any_box, merged = GroundingAccuracy(), MergedGroundingAccuracy()
    for metric in (any_box, merged):
        metric.update([both_dogs, one_wide_box], [reference, reference])
    # ANY-BOX: dogs found by their first box, then missed by the wide box (IoU 1/3); the ball once.
    assert any_box.compute() == {"grounding_acc": pytest.approx(2 / 4)}
    # MERGED-BOXES: both dog answers enclose [0, 0, 30, 10], the reference's merged region.
    assert merged.compute() == {"grounding_acc_merged": pytest.approx(3 / 4)}


def test_merged_grounding_accuracy_equals_any_box_for_one_box_answers() -> None:
    reference: Annotation = {"boxes": [[0, 0, 10, 10]], "labels": ["the cat"]}
    predictions: list[Annotation] = [{"boxes": [[0, 0, 10, 5]]}, {"boxes": [[0, 0, 10, 4.9]]}, {"boxes": []}]
    any_box, merged = GroundingAccuracy(), MergedGroundingAccuracy()
    for metric in (any_box, merged):
        metric.update(predictions, [reference] * 3)
    assert any_box.compute()["grounding_acc"] == merged.compute()["grounding_acc_merged"] == pytest.approx(1 / 3)


def test_enclosing_box() -> None:
    assert enclosing_box([[5, 1, 10, 10], [0, 3, 7, 12]]) == [0, 1, 10, 12]
