"""Task metrics over generated answers, accumulated across batches and synced across processes.

Every metric is a torchmetrics `Metric`: `update(predictions, references)` per batch, `compute()` ->
`dict[str, float]` at the end. Under DDP each process updates with its own samples and `compute()`
reports the metric over all of them, also when processes saw different numbers of samples or none
(a task's share of a mixed batch differs by process): states are sums, or, for the corpus metrics
(CIDEr-D, COCO mAP), flat tensors concatenated across processes.

`build_metric(name)` imports the module of the metric it builds only then: COCO mAP needs
torchvision and pycocotools, which the mmseg environment does not have, and `f2tune.train.module`
imports this package in every environment.

`normalize` and `exact_match` are the per-sample text comparison the text metrics share.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from f2tune.errors import RecipeError
from f2tune.tasks.schema import Annotation


def normalize(text: str) -> str:
    """Lower case, single spaces: formatting differences are not errors of the model."""
    return " ".join(text.lower().split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized prediction equals the normalized reference."""
    return float(normalize(prediction) == normalize(reference))


Prediction = str | Annotation
"""A generated text answer: the string itself, or its parsed `Annotation` (with `text`)."""

Reference = str | Sequence[str] | Annotation
"""The acceptable answers of a sample; see `texts_of`."""


def text_of(answer: Prediction) -> str:
    """The text of a generated answer, given as the raw string or as its parsed `Annotation`."""
    return answer if isinstance(answer, str) else answer.get("text", "")


def texts_of(reference: Reference) -> list[str]:
    """Every acceptable answer of a reference: one string, several (captions, human VQA answers), or
    an `Annotation` (its `answers` when it has them, else its `text`). An empty list is one empty
    answer, so that every metric scores it (0 for any prediction that says something)."""
    if isinstance(reference, str):
        return [reference]
    if isinstance(reference, dict):
        return list(reference["answers"]) if reference.get("answers") else [reference.get("text", "")]
    return list(reference) or [""]


class PerSampleMean(Metric):
    """Mean of a per-sample score. The states are a sum and a count, so DDP processes sync by summing
    them; subclasses define `score` and the result's `key`."""

    key: str
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def score(self, prediction: object, reference: object) -> float:
        """The score of one sample, in [0, 1] for the metrics here."""
        raise NotImplementedError

    def update(self, predictions: Sequence[object], references: Sequence[object]) -> None:
        """Add one batch; `predictions[i]` answers `references[i]`."""
        for prediction, reference in zip(predictions, references, strict=True):
            self.total += self.score(prediction, reference)
            self.count += 1

    def compute(self) -> dict[str, float]:
        """The mean over every sample seen (NaN before any update)."""
        return {self.key: float(self.total / self.count) if self.count else float("nan")}


_METRICS: dict[str, tuple[str, str]] = {
    "coco_map": ("detection", "CocoMeanAP"),
    "grounding_acc": ("detection", "GroundingAccuracy"),
    "grounding_acc_merged": ("detection", "MergedGroundingAccuracy"),
    "miou": ("segmentation", "PolygonIoU"),
    "cider": ("captioning", "CiderD"),
    "bleu4": ("captioning", "Bleu4"),
    "rougeL": ("captioning", "RougeL"),
    "vqa_accuracy": ("text", "VQAAccuracy"),
    "exact_match": ("text", "ExactMatch"),
    "anls": ("text", "ANLS"),
    "cer": ("text", "CER"),
    "wer": ("text", "WER"),
}
"""Metric name -> (module in this package, class)."""


def metric_class(name: str) -> type[Metric]:
    """The class `build_metric(name)` builds; its module is imported now."""
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(_METRICS)}")
    module, cls = _METRICS[name]
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    except (ImportError, ModuleNotFoundError) as err:  # e.g. coco_map without torchvision/pycocotools
        raise RecipeError(
            f"metric {name!r} cannot be built here: {err}. Install what it needs "
            "(COCO mAP: pip install 'f2tune[vision]' pycocotools) or choose another eval.metric."
        ) from None


def build_metric(name: str, **kwargs: Any) -> Metric:
    """A new metric object for `name` (see `_METRICS`); `kwargs` go to its constructor."""
    return metric_class(name)(**kwargs)


def result_keys(name: str) -> tuple[str, ...]:
    """The keys of what `compute()` returns for metric `name` (a run logs them as `val/<TASK>/<key>`),
    known without building it: `keys` where a metric returns several, else its one `key`."""
    cls = metric_class(name)
    return cls.keys if hasattr(cls, "keys") else (cls.key,)


COCO_NONE = -1.0
"""What COCO's summary (and so `coco_map`) reports for a size range without reference boxes."""
_COCO_KEY = re.compile(r"(^|/)ma[pr](_\w+)?$")


def metric_text(name: str, value: float) -> str:
    """`value` as tables print it: COCO's -1 as `n/a`, which a reader of the summary or the model
    card would otherwise take for a score (the logs keep -1, which the monitor can compare)."""
    if value == COCO_NONE and _COCO_KEY.search(name):
        return "n/a"
    return f"{value:.4f}"
