"""Builds the Lightning Trainer from the recipe's `trainer` and `optim` sections."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy, Strategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from transformers.models.bart.modeling_bart import BartDecoderLayer, BartEncoderLayer
from transformers.models.florence2.modeling_florence2 import Florence2VisionBlock

from f2tune.config import Recipe
from f2tune.errors import RecipeError
from f2tune.train.callbacks import SamplesPerSecond
from f2tune.train.checkpointing import AtomicCheckpointIO, RandomState
from f2tune.train.guards import NonFiniteGuard

FSDP_WRAPPED_LAYERS = {BartEncoderLayer, BartDecoderLayer, Florence2VisionBlock}
"""Each transformer layer becomes its own FSDP unit: weights are gathered one layer at a time."""


def build_trainer(recipe: Recipe, run_dir: Path, extra_callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    cfg = recipe.trainer
    has_val = bool(recipe.data.val)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{step}",
        monitor="val/loss" if has_val else None,
        mode="min",
        save_top_k=cfg.save_top_k if has_val else 0,
        save_last=True,
    )
    callbacks: list[pl.Callback] = [
        checkpoint,
        SamplesPerSecond(),
        LearningRateMonitor("step"),
        NonFiniteGuard(cfg.max_nonfinite_steps),
        RandomState(),
    ]
    if cfg.checkpoint_every_n_steps:  # a second callback: the first saves best and last at validations
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                save_top_k=0,
                save_last=True,
                every_n_train_steps=cfg.checkpoint_every_n_steps,
            )
        )
    try:
        return _trainer(recipe, run_dir, callbacks + list(extra_callbacks or []))
    except (ValueError, MisconfigurationException) as err:
        # e.g. fsdp or 16-mixed without a GPU, more devices than the machine has
        raise RecipeError(f"trainer settings cannot run here: {err}") from None


def _trainer(recipe: Recipe, run_dir: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    cfg = recipe.trainer
    has_val = bool(recipe.data.val)
    return pl.Trainer(
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
        # torchmetrics states reset inside inference_mode (trainer.validate before fit) could not
        # be updated later in fit's validation; no_grad gives the same speed for generation.
        inference_mode=False,
    )


def build_strategy(recipe: Recipe) -> Strategy | str:
    """`ddp` maps to Lightning's `auto`, which runs DDP whenever there is more than one process
    (devices or nodes) and a plain single-device loop otherwise; FSDP is built explicitly."""
    cfg = recipe.trainer
    if cfg.strategy == "fsdp":
        # Lightning keeps use_orig_params=True, which LoRA needs (frozen and trainable weights share units).
        return FSDPStrategy(
            auto_wrap_policy=FSDP_WRAPPED_LAYERS,
            activation_checkpointing_policy=FSDP_WRAPPED_LAYERS if cfg.gradient_checkpointing else None,
        )
    return "auto"


def build_loggers(recipe: Recipe, run_dir: Path) -> list[Logger]:
    # version=None numbers the folders (version_0, version_1, ...): a resumed run adds a version
    # instead of overwriting the logs of the first part.
    loggers: list[Logger] = []
    for name in recipe.trainer.loggers:
        if name == "tensorboard":
            loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard"))
        elif name == "csv":
            loggers.append(CSVLogger(run_dir / "logs", name="csv"))
        else:
            try:
                from lightning.pytorch.loggers import WandbLogger

                loggers.append(
                    WandbLogger(project="f2tune", name=recipe.trainer.run_name, save_dir=str(run_dir / "logs"))
                )
            except ModuleNotFoundError:
                raise RecipeError(
                    "trainer.loggers has 'wandb' but wandb is not installed: pip install 'f2tune[wandb]'"
                ) from None
    return loggers
