"""Where an evaluation files its per-sample predictions: `predictions/<stage>-step<N>/` of the run,
and never over an earlier evaluation's folder."""

from __future__ import annotations

import re
from pathlib import Path

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
