"""Logged points sit at the optimizer steps done, as checkpoint and predictions folder names count."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import pytest
from helpers import tiny_recipe
from lightning.pytorch.loggers import Logger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from f2tune.errors import RecipeError
from f2tune.recipe import validate_recipe
from f2tune.train.loggers import StepsDone, build_loggers
from f2tune.train.run import fit


def logged_steps(run: Path, version: int, name: str) -> list[int]:
    rows = csv.DictReader((run / "logs" / "csv" / f"version_{version}" / "metrics.csv").open())
    return [int(row["step"]) for row in rows if row.get(name)]


def test_points_are_at_steps_done_before_and_after_a_resume(tmp_path):
    first = fit(validate_recipe(tiny_recipe(tmp_path)))
    run = first.run_dir
    assert logged_steps(run, 0, "val/loss") == [0, 2, 4]  # before training, after steps 2 and 4
    assert logged_steps(run, 0, "train/loss") == [1, 2, 3, 4]
    best = int(re.search(r"step=(\d+)", Path(first.best_checkpoint).name).group(1))
    assert best in logged_steps(run, 0, "val/loss")
    assert {p.name for p in (run / "predictions").iterdir()} >= {"val-step000002", "val-step000004"}
    board = EventAccumulator(str(run / "logs" / "tensorboard" / "version_0"))
    board.Reload()
    assert sorted(event.step for event in board.Scalars("val/loss")) == [0, 2, 4]  # two event files

    fit(validate_recipe(tiny_recipe(tmp_path, trainer={"max_steps": 6})), resume=True)
    assert logged_steps(run, 1, "train/loss") == [5, 6]
    assert logged_steps(run, 1, "val/loss")[-1] == 6


class Sink(Logger):
    """A logger that keeps what it is asked to write."""

    name, version = "sink", 0

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[dict, int | None]] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.points.append((dict(metrics), step))

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass


class Counting(StepsDone, Sink):
    pass


class Trainer:
    global_step = 12


def test_the_trainers_step_replaces_lightnings_once_attached():
    logger, trainer = Counting(), Trainer()
    logger.log_metrics({"a": 1.0}, step=7)
    logger.count_steps_of(trainer)
    logger.log_metrics({"a": 2.0}, step=11)
    assert logger.points == [({"a": 1.0}, 7), ({"a": 2.0}, 12)]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_wandb_is_a_recipe_error(tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"loggers": ["wandb"]}))
    with pytest.raises(RecipeError, match=r"pip install 'f2tune\[wandb\]'"):
        build_loggers(recipe, tmp_path)
