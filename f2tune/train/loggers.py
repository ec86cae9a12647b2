"""The run's metric loggers (TensorBoard, CSV, wandb), every point drawn at the optimizer steps done.

Lightning writes a step's training metrics, and a validation that follows it, at the step's 0-based
index: the validation after 400 steps lands at 399, beside the training loss of the 400th step, and
a validation before training lands at 0 as well, on the first step's loss. Everything else a run
writes counts steps done: `best-step=400.ckpt`, `predictions/val-step000400`, the pictures in
TensorBoard, `--resume` messages. Here every logged point takes the trainer's `global_step` at the
time it is written (optimizer steps done), so the before-training validation sits at 0, the loss
of step N at N, and a chart, a checkpoint name and a predictions folder name agree. A resumed run
continues from its checkpoint's step the same way.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from f2tune.config import Recipe
from f2tune.errors import RecipeError


class StepsDone(Logger):
    """Mixin: `log_metrics` at the attached trainer's `global_step` instead of Lightning's index."""

    _trainer: weakref.ReferenceType[pl.Trainer] | None = None

    def count_steps_of(self, trainer: pl.Trainer) -> None:
        self._trainer = weakref.ref(trainer)  # the trainer holds its loggers: no cycle

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        trainer = self._trainer() if self._trainer is not None else None
        super().log_metrics(metrics, trainer.global_step if trainer is not None else step)


class TensorBoardSteps(StepsDone, TensorBoardLogger):
    """TensorBoard event files with the x axis in optimizer steps done."""


class CSVSteps(StepsDone, CSVLogger):
    """`metrics.csv` whose `step` column is optimizer steps done."""


class WandbSteps(StepsDone, WandbLogger):
    """wandb's `trainer/global_step` in optimizer steps done."""


def build_loggers(recipe: Recipe, run_dir: Path) -> list[Logger]:
    """The recipe's `trainer.loggers` under `run_dir/logs`; call `attach_loggers` once the trainer exists."""
    # version=None numbers the folders (version_0, version_1, ...): a resumed run adds a version
    # instead of overwriting the logs of the first part.
    loggers: list[Logger] = []
    for name in recipe.trainer.loggers:
        if name == "tensorboard":
            loggers.append(TensorBoardSteps(run_dir / "logs", name="tensorboard"))
        elif name == "csv":
            loggers.append(CSVSteps(run_dir / "logs", name="csv"))
        else:
            loggers.append(_wandb(recipe, run_dir))
    return loggers


def attach_loggers(trainer: pl.Trainer) -> None:
    """Let the trainer's loggers read its step count (they are built before it)."""
    for logger in trainer.loggers:
        if isinstance(logger, StepsDone):
            logger.count_steps_of(trainer)


def _wandb(recipe: Recipe, run_dir: Path) -> Logger:
    try:
        return WandbSteps(project="f2tune", name=recipe.trainer.run_name, save_dir=str(run_dir / "logs"))
    except ModuleNotFoundError:  # Lightning's WandbLogger refuses to start without wandb
        raise RecipeError(
            "trainer.loggers has 'wandb' but wandb is not installed: pip install 'f2tune[wandb]'"
        ) from None
