"""The closing summary of a fit: what was measured and where everything was written."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console
from rich.table import Table

from f2tune.eval.metrics import metric_text
from f2tune.train.trainer import best_checkpoints

if TYPE_CHECKING:
    from f2tune.train.run import FitResult


def print_summary(result: FitResult, trainer: pl.Trainer) -> None:
    console = Console(stderr=True, soft_wrap=True)
    metrics = Table(title="f2tune: validation metrics", show_header=True)
    metrics.add_column("metric", overflow="fold")  # whole names: two metrics of a task may differ at the end
    metrics.add_column("before training")
    metrics.add_column("after training")
    for name in sorted(set(result.metrics_before) | set(result.metrics_after)):
        before = result.metrics_before.get(name)
        after = result.metrics_after.get(name)
        shown = ["-" if value is None else metric_text(name, value) for value in (before, after)]
        metrics.add_row(name, *shown)
    if result.metrics_after:
        console.print(metrics)
    truncated = trainer.callback_metrics.get("data/truncated_targets")
    lines = [
        f"steps: {trainer.global_step}   time: {result.seconds:.0f} s{_early_stop(trainer)}",
        f"run directory: {result.run_dir}",
        f"effective recipe: {result.run_dir / 'config.yaml'}",
        f"last checkpoint: {result.last_checkpoint or '-'}",
        f"best checkpoint: {result.best_checkpoint or '-'}{_best_score(trainer) if result.best_checkpoint else ''}",
        f"logs: {result.run_dir / 'logs'}  (tensorboard --logdir {result.run_dir / 'logs'})",
        f"loss curve: {result.loss_curve or _no_curve(trainer)}",
        f"export: {f'{result.export_dir} ({result.exported})' if result.export_dir else 'disabled'}",
    ]
    if truncated is not None and float(truncated) > 0:
        lines.append(f"targets truncated to data.max_target_tokens in the last epoch: {int(truncated)}")
    console.print("\n".join(f"f2tune: {line}" for line in lines))


def _no_curve(trainer: pl.Trainer) -> str:
    """Why there is no loss curve: it is drawn from the csv logger's file, which holds a loss once a
    validation or `trainer.log_every_n_steps` steps have logged one."""
    if not any(isinstance(logger, CSVLogger) for logger in trainer.loggers):
        return "- (drawn from the csv logger's file: add csv to trainer.loggers)"
    return "- (no loss logged: no validation, and fewer steps than trainer.log_every_n_steps)"


def _best_score(trainer: pl.Trainer) -> str:
    """` (val/OD/map 0.4123)`: what made the best checkpoint the best. Lightning ranks a NaN score as
    the worst (it stores inf, or -inf): an infinite best means no validation measured a finite one."""
    checkpoint = best_checkpoints(trainer)
    score = getattr(checkpoint, "best_model_score", None)
    if score is None:
        return ""
    if not math.isfinite(float(score)):
        return f" ({checkpoint.monitor} not finite at any validation)"
    return f" ({checkpoint.monitor} {float(score):.4f})"


def _early_stop(trainer: pl.Trainer) -> str:
    """`   stopped early: ...` when trainer.early_stopping_patience ended the run."""
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if stopper is None or stopper.wait_count < stopper.patience:
        return ""
    return f"   stopped early: {stopper.monitor} did not improve for {stopper.patience} validation(s)"
