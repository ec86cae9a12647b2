"""Per-sample scores for generated text; averaged across batches and processes by torchmetrics."""

from __future__ import annotations

from collections.abc import Callable


def normalize(text: str) -> str:
    """Lower case, single spaces: formatting differences are not errors of the model."""
    return " ".join(text.lower().split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized prediction equals the normalized reference."""
    return float(normalize(prediction) == normalize(reference))


SCORERS: dict[str, Callable[[str, str], float]] = {"exact_match": exact_match}
"""Metric name (as in `eval.metric`) -> per-sample scorer."""
