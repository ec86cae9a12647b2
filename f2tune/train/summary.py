"""The closing summary of a fit: what was measured and where everything was written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning.pytorch as pl
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from f2tune.train.run import FitResult


def print_summary(result: FitResult, trainer: pl.Trainer) -> None:
    console = Console(stderr=True, soft_wrap=True)
    metrics = Table(title="f2tune: validation metrics", show_header=True)
    metrics.add_column("metric")
    metrics.add_column("before training")
    metrics.add_column("after training")
    for name in sorted(set(result.metrics_before) | set(result.metrics_after)):
        before = result.metrics_before.get(name)
        after = result.metrics_after.get(name)
        metrics.add_row(name, "-" if before is None else f"{before:.4f}", "-" if after is None else f"{after:.4f}")
    if result.metrics_after:
        console.print(metrics)
    truncated = trainer.callback_metrics.get("data/truncated_targets")
    lines = [
        f"steps: {trainer.global_step}   time: {result.seconds:.0f} s",
        f"run directory: {result.run_dir}",
        f"effective recipe: {result.run_dir / 'config.yaml'}",
        f"last checkpoint: {result.last_checkpoint or '-'}",
        f"best checkpoint: {result.best_checkpoint or '-'}",
        f"logs: {result.run_dir / 'logs'}  (tensorboard --logdir {result.run_dir / 'logs'})",
        f"loss curve: {result.loss_curve or '- (needs the csv logger)'}",
        f"export: {result.export_dir or 'disabled'}",
    ]
    if truncated is not None and float(truncated) > 0:
        lines.append(f"targets truncated to data.max_target_tokens in the last epoch: {int(truncated)}")
    console.print("\n".join(f"f2tune: {line}" for line in lines))
