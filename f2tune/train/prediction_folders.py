"""Where an evaluation files its per-sample predictions: `predictions/<stage>-step<N>/` of the run,
and never over an earlier evaluation's folder."""

from __future__ import annotations

from pathlib import Path


def unused_folder(root: Path, stage: str, step: int) -> Path:
    """`<stage>-step<N>` (six digits) under `root`, or `-2`, `-3`... after it where an earlier
    evaluation of the same weights wrote one: `f2tune validate` of a step fit validated, perhaps
    on other data or with other decoding settings, would otherwise replace fit's predictions and
    metrics (and a second `validate` the first's)."""
    name = f"{stage}-step{step:06d}"
    folder, count = root / name, 1
    while folder.exists():
        count += 1
        folder = root / f"{name}-{count}"
    return folder
