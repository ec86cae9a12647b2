"""The metric registry: every metric's declared result keys are what its `compute` returns."""

from __future__ import annotations

import typing

import pytest

from f2tune.config.sections import MetricName
from f2tune.eval.metrics import build_metric, result_keys

NAMES = [name for name in typing.get_args(MetricName) if name not in ("auto", "none")]


@pytest.mark.filterwarnings("ignore")  # computing an empty metric warns in torchmetrics
@pytest.mark.parametrize("name", NAMES)
def test_declared_result_keys_are_what_compute_returns(name):
    assert list(build_metric(name).compute()) == list(result_keys(name))


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown metric 'bleu'; known metrics: coco_map"):
        result_keys("bleu")


TEXT_METRICS = ["cider", "bleu4", "rougeL", "vqa_accuracy", "exact_match", "anls"]  # those scored against answer lists


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", TEXT_METRICS)
def test_an_empty_list_of_answers_scores_like_an_empty_answer(name):
    """BLEU-4 and exact match raised on `[]` (min/max of nothing) where the others scored it."""
    empty, blank = build_metric(name), build_metric(name)
    empty.update(["a cat"], [[]])
    blank.update(["a cat"], [[""]])
    assert empty.compute() == blank.compute()
