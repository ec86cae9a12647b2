"""`trainer.monitor`: the validation value that picks the best checkpoint and stops a run early.

Lightning names a monitored key it cannot find only at the end of the first validation, which may
come an hour into training. The keys a run will log are known once its validation data is read
(its tasks, each task's metrics, each metric's result keys), so a misspelled monitor is refused
then, before any weights load, with the close keys named.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Literal

from f2tune.config import Recipe
from f2tune.errors import RecipeError
from f2tune.eval.evaluator import metrics_for, task_label
from f2tune.eval.metrics import metric_class, result_keys


def logged_values(tasks: Iterable[str], recipe: Recipe) -> dict[str, bool]:
    """Every value a validation of these tasks logs -> whether higher is better."""
    values = {"val/loss": False}
    for task in sorted(set(tasks)):
        for name in metrics_for(task, recipe.eval):
            higher = bool(metric_class(name).higher_is_better)
            values.update({f"val/{task_label(task)}/{key}": higher for key in result_keys(name)})
    return values


def monitor_mode(recipe: Recipe, val_tasks: Iterable[str]) -> Literal["min", "max"]:
    """`trainer.monitor_mode`, with `auto` decided by the metric; RecipeError if the run does not
    log `trainer.monitor`."""
    monitor = recipe.trainer.monitor
    if not recipe.data.val:
        return "min"  # no validation: nothing is monitored (the recipe refuses what would need it)
    values = logged_values(val_tasks, recipe)
    if monitor not in values:
        close = difflib.get_close_matches(monitor, list(values), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        raise RecipeError(f"trainer.monitor: this run does not log {monitor!r}{hint} It logs: {', '.join(values)}")
    if recipe.trainer.monitor_mode != "auto":
        return recipe.trainer.monitor_mode
    return "max" if values[monitor] else "min"


def monitored_tasks(monitor: str) -> list[str]:
    """The task a `val/<TASK>/<key>` monitor names (none for `val/loss`). Where no validation data
    is read (`f2tune test`), this is what `monitor_mode` needs: the checkpoint callbacks must be
    built with the fit's mode, or Lightning would not match them to the checkpoint's own."""
    parts = monitor.split("/")
    if len(parts) != 3:
        return []
    return ["" if parts[1] == "custom" else f"<{parts[1]}>"]
