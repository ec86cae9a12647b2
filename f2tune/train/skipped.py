"""Batches and whole splits that `on_bad_record: skip` emptied (images that no longer decode, found
while loading): what the training step does with no sample, and the error when nothing is left."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from f2tune.errors import DataError

SKIPPED_ADVICE = "(`f2tune check-data RECIPE` lists them); mend or replace them"


def forget_step_metrics(trainer: pl.Trainer) -> None:
    """Lightning logs each per-step metric's latest value at every step, logged in that step or not:
    a step without a sample forgets the previous step's loss and gradient norm, which would
    otherwise be written again as its own. Lightning has no public way to unlog a value."""
    for metric in trainer._results.result_metrics:
        if metric.meta.on_step:
            metric._forward_cache = None


def summed(trainer: pl.Trainer, device: torch.device, *counts: int) -> list[float]:
    """`counts` summed over the processes (on each of them alike, so that all stop or none)."""
    return trainer.strategy.reduce(torch.tensor([float(c) for c in counts], device=device), reduce_op="sum").tolist()


def check_trained(trainer: pl.Trainer, device: torch.device, samples: int, batches: int, skipped: int) -> None:
    """Stop with the reason after an epoch of batches without one sample in any process, which
    would otherwise end in an export of the weights the run started from, as if trained."""
    samples, batches = summed(trainer, device, samples, batches)
    if batches and not samples:
        raise DataError(
            f"no training sample could be read in epoch {trainer.current_epoch}: data.on_bad_record: skip "
            f"dropped all {skipped} records this process met {SKIPPED_ADVICE}"
        )


def check_evaluated(trainer: pl.Trainer, device: torch.device, samples: int, stage: str) -> None:
    """Stop with the reason when no process had a sample to validate or test, where Lightning would
    go on and fail later on a metric never logged (`val/loss`, which checkpoints follow). The sanity
    check's few batches may all be bad alone: not checked."""
    if trainer.sanity_checking or summed(trainer, device, samples)[0]:
        return
    data = "validation" if stage == "val" else "test"
    raise DataError(
        f"no {data} sample could be read: data.on_bad_record: skip dropped every record of data.{stage} "
        f"{SKIPPED_ADVICE}"
    )
