"""Callbacks that make a run explain itself: samples/s in the progress bar and the logs."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar


class SamplesPerSecond(pl.Callback):
    """Logs `train/samples_per_s` (all processes together) next to the loss in the progress bar.

    Measured between consecutive batch ends, so data loading counts; smoothed over `window` batches
    and logged every `log_every_n_steps` batches, when the loggers write anyway (a `log` call is
    ~0.3 ms of Lightning bookkeeping; the progress bar keeps showing the last value in between).
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._marks: list[tuple[float, int]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._marks = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._marks:  # first batch (of an epoch, or after resuming mid-epoch): start the clock
            self._marks = [(time.perf_counter(), 0)]
            return
        seen = self._marks[-1][1] + len(batch.get("ids", ()))
        self._marks = (self._marks + [(time.perf_counter(), seen)])[-(self.window + 1) :]
        (start, first), (end, last) = self._marks[0], self._marks[-1]
        if end > start and (batch_idx + 1) % trainer.log_every_n_steps == 0:
            rate = (last - first) / (end - start) * trainer.world_size
            pl_module.log("train/samples_per_s", rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, without the epoch total of a run that has none, nor the
    logger's version number (`v_num`: the folder under logs/, not a measurement).

    A run limited by `trainer.max_steps` has `max_epochs=-1` (no limit), which Lightning 2.6 writes
    as the total "Epoch 1/-2"; this bar writes "Epoch 1" then (as Lightning does from 2.7 on).
    """

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float | dict]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"
