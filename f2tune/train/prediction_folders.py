"""Where an evaluation files its per-sample predictions: `predictions/<stage>-step<N>/` of the run,
and never over an earlier evaluation's folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from f2tune.train.pictures import save_pictures, validation_pictures

FOLDER_STEP = re.compile(r"-step(\d+)(?:-\d+)?$")
"""The end of a predictions folder's name: the step it measured (`val-step000004`), and the count
of a later evaluation of the same step (`val-step000004-2`), as `unused_folder` names them."""


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


def write_predictions(
    trainer: pl.Trainer,
    root: Path,
    stage: str,
    step: int,
    records: list[dict[str, Any]],
    results: dict[str, float],
    pictures: int,
) -> Path:
    """`<root>/<stage>-step<N>/rank<R>.jsonl` per process and `metrics.json` from rank 0
    (`<stage>-step<N>-2/`... where an earlier evaluation of the step wrote that folder), with the
    first `pictures` samples of each task drawn, reference beside prediction; returns the folder."""
    chosen = unused_folder(root, stage, step) if trainer.is_global_zero else None
    folder = trainer.strategy.broadcast(chosen)  # rank 0's choice, made before any process writes
    folder.mkdir(parents=True, exist_ok=True)  # on each node: output_dir may be a node's own disk
    with (folder / f"rank{trainer.global_rank}.jsonl").open("w") as lines:
        for record in records:
            lines.write(json.dumps(record, default=float) + "\n")
    if trainer.is_global_zero:
        (folder / "metrics.json").write_text(json.dumps(results, indent=2))
        datamodule = getattr(trainer, "datamodule", None)
        if pictures and datamodule is not None:
            samples = (s for part in getattr(datamodule, f"{stage}_parts") for s in part.samples)
            save_pictures(
                validation_pictures(records, samples, pictures), folder / "pictures", trainer.loggers, stage, step
            )
    return folder
