"""COCO mAP against pycocotools run directly on the same boxes."""

from __future__ import annotations

import contextlib

import pytest

from f2tune.eval.metrics import build_metric, metric_text
from f2tune.eval.metrics.detection import CocoMeanAP, label_id
from f2tune.tasks.schema import Annotation

pytest.importorskip("pycocotools")
pytest.importorskip("torchvision", reason="torchmetrics' MeanAveragePrecision needs torchvision")

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

REFERENCES: list[Annotation] = [
    {"boxes": [[10, 10, 60, 60], [100, 100, 180, 160]], "labels": ["cat", "dog"]},
    {"boxes": [[20, 30, 120, 90]], "labels": ["dog"]},
    {"boxes": [[0, 0, 40, 40], [50, 50, 90, 90]], "labels": ["cat", "cat"]},
]
# the true positives come first with low scores, the false positives after them with high ones:
# with every score 1.0 the (stable) ranking keeps list order and the mAP rises
PREDICTIONS: list[Annotation] = [
    {
        "boxes": [[12, 8, 62, 58], [100, 102, 178, 160], [200, 10, 260, 70]],
        "labels": ["cat", "dog", "cat"],
        "scores": [0.55, 0.7, 0.9],
    },
    {"boxes": [[25, 30, 118, 95], [0, 100, 40, 140]], "labels": ["dog", "dog"], "scores": [0.4, 0.8]},
    {"boxes": [[1, 1, 41, 39], [60, 60, 95, 95]], "labels": ["Cat", "cat"], "scores": [0.3, 0.95]},
]


def pycocotools_stats(predictions: list[Annotation], references: list[Annotation]) -> list[float]:
    """COCOeval's 12 summary numbers, computed without torchmetrics."""
    categories = {"cat": 1, "dog": 2}
    images, annotations, detections = [], [], []
    for image_id, (prediction, reference) in enumerate(zip(predictions, references), start=1):
        images.append({"id": image_id, "width": 300, "height": 300})
        objects = [(box, label, 0) for box, label in zip(reference["boxes"], reference["labels"])]
        crowds = [
            (box, label, 1) for box, label in zip(reference.get("crowd_boxes", []), reference.get("crowd_labels", []))
        ]
        areas = reference.get("areas", [0] * len(objects)) + reference.get("crowd_areas", [0] * len(crowds))
        for ((x1, y1, x2, y2), label, crowd), area in zip(objects + crowds, areas):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": categories[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": area or (x2 - x1) * (y2 - y1),
                    "iscrowd": crowd,
                }
            )
        scores = prediction.get("scores") or [1.0] * len(prediction["boxes"])
        for (x1, y1, x2, y2), label, score in zip(prediction["boxes"], prediction["labels"], scores):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": categories[label.lower()],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in categories.items()],
    }
    ground_truth.createIndex()
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return [float(s) for s in evaluation.stats]


def without_scores(predictions: list[Annotation]) -> list[Annotation]:
    return [{k: v for k, v in p.items() if k != "scores"} for p in predictions]


@pytest.mark.parametrize("scored", [True, False], ids=["scores", "all-1.0"])
def test_coco_map_equals_pycocotools(scored: bool) -> None:
    predictions = PREDICTIONS if scored else without_scores(PREDICTIONS)
    metric = CocoMeanAP()
    metric.update(predictions[:2], REFERENCES[:2])  # two batches: class ids must agree across them
    metric.update(predictions[2:], REFERENCES[2:])
    result = metric.compute()
    expected = pycocotools_stats(predictions, REFERENCES)
    assert result["map"] == pytest.approx(expected[0], abs=1e-6)
    assert result["map_50"] == pytest.approx(expected[1], abs=1e-6)
    assert result["map_75"] == pytest.approx(expected[2], abs=1e-6)
    assert result["mar_100"] == pytest.approx(expected[8], abs=1e-6)
    assert all(isinstance(value, float) for value in result.values())


def test_coco_map_equals_pycocotools_at_a_recall_of_exactly_three_fifths() -> None:
    """torchmetrics' default thresholds are float32 (recall 0.6 is 0.6000000238): with them this
    read 0.932343 against COCO's 0.933993."""
    references: list[Annotation] = [{"boxes": [[i * 50, 0, i * 50 + 40, 40] for i in range(5)], "labels": ["cat"] * 5}]
    hits = [[i * 50, 0, i * 50 + 40, 40] for i in range(5)]
    predictions: list[Annotation] = [
        {
            "boxes": [*hits[:3], [0, 200, 40, 240], *hits[3:]],
            "labels": ["cat"] * 6,
            "scores": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        }
    ]
    metric = CocoMeanAP()
    metric.update(predictions, references)
    expected = pycocotools_stats(predictions, references)
    assert metric.compute()["map"] == pytest.approx(expected[0], abs=1e-9)


def test_detections_in_a_crowd_region_are_ignored_as_coco_does() -> None:
    """COCO's iscrowd regions: a detection inside one is neither a hit nor a false positive (left
    out, it counted as a false positive ranked above the hit: 0.5 where COCO reads 1.0)."""
    references: list[Annotation] = [
        {"boxes": [[10, 10, 60, 60]], "labels": ["cat"], "crowd_boxes": [[100, 100, 250, 250]], "crowd_labels": ["cat"]}
    ]
    predictions: list[Annotation] = [
        {"boxes": [[120, 120, 170, 170], [10, 10, 60, 60]], "labels": ["cat", "cat"], "scores": [0.9, 0.5]}
    ]
    metric = CocoMeanAP()
    metric.update(predictions, references)
    expected = pycocotools_stats(predictions, references)
    assert expected[0] == pytest.approx(1.0)
    assert metric.compute()["map"] == pytest.approx(expected[0], abs=1e-9)


def test_class_agnostic_map_ignores_the_references_labels() -> None:
    """`<REGION_PROPOSAL>` answers carry no labels: a reference read with its categories must not
    put every proposal in a class of its own (a perfect answer scored 0)."""
    references: list[Annotation] = [{"boxes": [[0, 0, 10, 10], [20, 20, 40, 40]], "labels": ["cat", "dog"]}]
    predictions: list[Annotation] = [{"boxes": [[20, 20, 40, 40], [0, 0, 10, 10]], "scores": [0.9, 0.8]}]
    labelled, agnostic = CocoMeanAP(), CocoMeanAP(class_agnostic=True)
    for metric in (labelled, agnostic):
        metric.update(predictions, references)
    assert (labelled.compute()["map"], agnostic.compute()["map"]) == (0.0, pytest.approx(1.0))


def test_scores_change_the_map() -> None:
    scored, unscored = CocoMeanAP(), CocoMeanAP()
    scored.update(PREDICTIONS, REFERENCES)
    unscored.update(without_scores(PREDICTIONS), REFERENCES)
    assert scored.compute()["map_50"] < unscored.compute()["map_50"]


def test_boxes_keep_their_digits_where_a_run_computes_in_bfloat16() -> None:
    """Under `bf16-true` Lightning makes bfloat16 the default dtype around each validation step,
    where the evaluator updates its metrics: boxes read into a tensor of the default dtype were
    rounded to bfloat16's 4-pixel steps above 512 (605.9 -> 604), and this IoU of 0.941 read 0.96,
    found at every threshold up to 0.95."""
    from lightning.pytorch.plugins.precision import HalfPrecision

    maps = []
    for context in (contextlib.nullcontext(), HalfPrecision("bf16-true").forward_context()):
        metric = CocoMeanAP()
        with context:
            metric.update([{"boxes": [[605.9, 600, 700, 700]], "labels": ["cat"]}], [REFERENCE_AT_600])
        maps.append(metric.compute()["map"])
    assert maps == [pytest.approx(0.9), pytest.approx(0.9)]


REFERENCE_AT_600: Annotation = {"boxes": [[600, 600, 700, 700]], "labels": ["cat"]}


def test_coco_map_handles_empty_and_unlabelled_annotations() -> None:
    metric = build_metric("coco_map")
    metric.update(
        [{"boxes": [], "labels": []}, {"boxes": [[0, 0, 10, 10]], "scores": [0.5]}],
        [{"boxes": [[0, 0, 10, 10]], "labels": ["cat"]}, {"boxes": [[0, 0, 10, 10]]}],
    )
    result = metric.compute()
    assert result["map"] == pytest.approx(0.5)  # class "cat": missed (AP 0); proposals: found (AP 1)


def test_a_detection_on_an_image_without_objects_is_a_false_one() -> None:
    """As pycocotools scores it: the image with no object still counts its detections."""
    metric = CocoMeanAP()
    found = {"boxes": [[10, 10, 50, 50]], "labels": ["cat"], "scores": [0.5]}
    false = {"boxes": [[10, 10, 50, 50]], "labels": ["cat"], "scores": [0.9]}
    references = [{"boxes": [[10, 10, 50, 50]], "labels": ["cat"]}, {"boxes": [], "labels": []}]
    metric.update([found, false], references)
    assert metric.compute()["map"] == pytest.approx(pycocotools_stats([found, false], references)[0]) == 0.5


def test_size_ranges_follow_the_objects_areas_as_cocos_do() -> None:
    """A 40x40 box round an object of 900 pixels is a small object for COCO (area < 32**2), whose
    ranges are judged by the segment's area: by its box it read as medium."""
    references = [
        {"boxes": [[10, 10, 50, 50], [100, 100, 200, 200]], "labels": ["cat", "dog"], "areas": [900.0, 0.0]},
        {"boxes": [[0, 0, 20, 20]], "labels": ["cat"], "crowd_boxes": [[50, 50, 90, 90]], "crowd_labels": ["cat"]},
    ]
    predictions = [
        {"boxes": [[10, 10, 50, 50], [100, 100, 200, 200]], "labels": ["cat", "dog"], "scores": [0.9, 0.8]},
        {"boxes": [[0, 0, 20, 22], [52, 50, 90, 90]], "labels": ["cat", "cat"], "scores": [0.7, 0.6]},
    ]
    metric = CocoMeanAP()
    metric.update(predictions, references)
    result = metric.compute()
    expected = pycocotools_stats(predictions, references)
    assert [result[key] for key in CocoMeanAP.keys] == pytest.approx(expected, abs=1e-6)
    assert result["map_medium"] == -1  # no medium object: the 40x40 box is small by its area


def test_sizes_without_reference_boxes_are_shown_as_not_applicable() -> None:
    """COCO reports -1 for a size range without reference boxes; tables say n/a, not a score."""
    metric = build_metric("coco_map")
    metric.update([{"boxes": [[0, 0, 10, 10]], "labels": ["cat"]}], [{"boxes": [[0, 0, 10, 10]], "labels": ["cat"]}])
    result = metric.compute()
    assert result["map_large"] == result["mar_medium"] == -1.0 and result["map_small"] == 1.0
    shown = {key: metric_text(f"val/OD/{key}", value) for key, value in result.items()}
    assert shown["map_large"] == shown["mar_medium"] == "n/a" and shown["map_small"] == "1.0000"
    assert metric_text("val/loss", -1.0) == "-1.0000"


def test_label_ids_are_stable_and_normalized() -> None:
    assert label_id("Traffic  Light") == label_id("traffic light") != label_id("stop sign")
    assert 0 <= label_id("cat") < 2**63


def test_many_free_text_labels_are_told_apart_across_validations() -> None:
    """Region descriptions run to tens of thousands of labels: with 31-bit ids two of them
    (46,891 here) were one class and the validation stopped on a ValueError."""
    metric = CocoMeanAP()
    labels = [f"a white plate with food {i}" for i in range(50_000)]
    assert len({label_id(label) for label in labels}) == len(labels)
    for first in (9601, 46890):  # the pair that shared a 31-bit id, in two validations
        box = {"boxes": [[0.0, 0.0, 10.0, 10.0]], "labels": [labels[first]]}
        metric.update([{**box, "scores": [0.9]}], [box])
        assert metric.compute()["map"] == pytest.approx(1.0)
        metric.reset()
