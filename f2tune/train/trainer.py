"""Builds the Lightning Trainer from the recipe's `trainer` and `optim` sections."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from f2tune.config import Recipe
from f2tune.errors import RecipeError
from f2tune.train.callbacks import ProgressBar, SamplesPerSecond
from f2tune.train.checkpointing import (
    AtomicCheckpointIO,
    FinalStep,
    RandomState,
    WholeStepCheckpoint,
    inside_an_accumulated_step,
)
from f2tune.train.early_stopping import ValidationEarlyStopping
from f2tune.train.fsdp import LayerwiseFSDP, check_fsdp_device
from f2tune.train.guards import NonFiniteGuard
from f2tune.train.locate import BEST_FILENAME, last_checkpoint
from f2tune.train.loggers import attach_loggers, build_loggers
from f2tune.train.stopping import StopOnRequest


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    monitor_mode: Literal["min", "max"] = "min",
    extra_callbacks: list[pl.Callback] | None = None,
) -> pl.Trainer:
    """`monitor_mode`: how `trainer.monitor` improves (`f2tune.train.monitor.monitor_mode`)."""
    cfg = recipe.trainer
    has_val = bool(recipe.data.val)
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename=BEST_FILENAME,
        monitor=cfg.monitor,
        mode=monitor_mode,
        save_top_k=cfg.save_top_k,
        # at the validation's end, as the writers of last.ckpt: left to Lightning, a validation at
        # each epoch's end saved the best at the epoch's end, after last.ckpt, which then held the
        # best of the validation before (a resumed run lost its best checkpoint)
        save_on_train_epoch_end=False,
    )
    callbacks: list[pl.Callback] = [
        *([best] if has_val else []),  # before the writers of last.ckpt: its state there is current
        *last_checkpoint_writers(run_dir, has_val, cfg.checkpoint_every_n_steps),
        SamplesPerSecond(),
        ProgressBar(),
        *([LearningRateMonitor("step")] if cfg.loggers else []),  # it refuses a trainer without loggers
        NonFiniteGuard(cfg.max_nonfinite_steps),
        RandomState(),
        StopOnRequest(last_checkpoint(run_dir)),
        FinalStep(last_checkpoint(run_dir)),
    ]
    if cfg.early_stopping_patience:
        callbacks.append(ValidationEarlyStopping(cfg.monitor, cfg.early_stopping_patience, monitor_mode))
    check_machine(recipe)
    try:
        return _trainer(recipe, run_dir, callbacks + list(extra_callbacks or []))
    except (ValueError, TypeError, MisconfigurationException) as err:
        # e.g. fsdp without a GPU, more devices than the machine has, a list of devices on a CPU
        raise RecipeError(f"trainer settings cannot run here: {err}") from None


LAUNCHER_VARIABLES = ("WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "SLURM_NTASKS", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE")
"""Set by whatever tells a process of a many-node job where the others are: torchrun, SLURM's srun,
LSF, MPI, or a user who sets MASTER_ADDR and NODE_RANK on each node."""


def check_machine(recipe: Recipe) -> None:
    """What Lightning would not refuse: `16-mixed` on a CPU runs as bf16-mixed (a warning, and a run
    other than the recipe says), and several nodes without a launcher wait for the others forever."""
    check_fsdp_device(recipe)
    cfg = recipe.trainer
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not torch.cuda.is_available())
    if cfg.precision == "16-mixed" and on_cpu:
        raise RecipeError(
            "trainer.precision 16-mixed needs a GPU (fp16 with loss scaling); on a CPU use bf16-mixed or 32-true"
        )
    if cfg.num_nodes > 1 and not any(name in os.environ for name in LAUNCHER_VARIABLES):
        raise RecipeError(
            f"trainer.num_nodes is {cfg.num_nodes}, but no launcher started this command (torchrun, srun, or "
            "MASTER_ADDR and NODE_RANK set on each node): it would wait for the other nodes forever. Start the "
            "command on every node that way (README: Many GPUs, many nodes)"
        )


def best_checkpoints(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The callback that keeps the best checkpoints by `trainer.monitor` (None without data.val)."""
    return next((c for c in trainer.checkpoint_callbacks if c.monitor is not None), None)


def last_checkpoint_writers(run_dir: Path, has_val: bool, every_n_steps: int | None) -> list[ModelCheckpoint]:
    """The writers of `checkpoints/last.ckpt`, what `--resume` reads: at every validation (at each
    epoch's end without validation data) and, with `trainer.checkpoint_every_n_steps`, every N steps.

    Not Lightning's `save_last`: since Lightning 2.6 it writes last.ckpt only at steps where a best
    checkpoint is saved, so a run whose monitored value stopped improving would resume from the
    step it last improved at. Each writer keeps one file, the same one (no `last-v1.ckpt`)."""
    writer = {"dirpath": run_dir / "checkpoints", "filename": "last", "monitor": None, "save_top_k": 1}
    writer["enable_version_counter"] = False
    writers: list[ModelCheckpoint] = [WholeStepCheckpoint(**writer, save_on_train_epoch_end=not has_val)]
    if every_n_steps:
        writers.append(ModelCheckpoint(**writer, every_n_train_steps=every_n_steps))
    return writers


def _trainer(recipe: Recipe, run_dir: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    cfg = recipe.trainer
    has_val = bool(recipe.data.val)
    trainer = WholeStepTrainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=build_strategy(recipe),
        precision=cfg.precision,
        max_steps=cfg.max_steps,
        max_epochs=cfg.max_epochs if cfg.max_epochs is not None else -1,
        val_check_interval=cfg.val_check_interval,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        limit_val_batches=None if has_val else 0,
        log_every_n_steps=cfg.log_every_n_steps,
        gradient_clip_val=recipe.optim.grad_clip,
        accumulate_grad_batches=recipe.optim.accumulate,
        logger=build_loggers(recipe, run_dir),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=run_dir,
        num_sanity_val_steps=0,
        # The run prints its trainable parameters per part itself (`parameter_report`); Lightning's
        # table would add a FLOPs column of zeros (it counts only with an example input) and, at
        # bf16-mixed, a warning that its size estimate assumes 32 bits, which fp32 weights are.
        enable_model_summary=False,
        # torchmetrics states reset inside inference_mode (trainer.validate before fit) could not
        # be updated later in fit's validation; no_grad gives the same speed for generation.
        inference_mode=False,
    )
    attach_loggers(trainer)
    return trainer


class WholeStepTrainer(pl.Trainer):
    """Lightning's Trainer whose stop on request (SIGTERM, Ctrl-C, SLURM's requeue signal) waits for
    the end of an optimizer step that `optim.accumulate` spreads over several batches: stopped, and
    checkpointed, between them, the run would resume past batches whose gradients were summed but
    never applied. Lightning's loops read this flag at each batch's end and in validations."""

    @property
    def received_sigterm(self) -> bool:
        return super().received_sigterm and not inside_an_accumulated_step(self)


def build_strategy(recipe: Recipe) -> Strategy | str:
    """`ddp` maps to Lightning's `auto`, which runs DDP whenever there is more than one process
    (devices or nodes) and a plain single-device loop otherwise; FSDP is built explicitly."""
    cfg = recipe.trainer
    if cfg.strategy == "fsdp":
        return LayerwiseFSDP(recipe)
    return "auto"
