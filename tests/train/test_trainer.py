"""The Trainer the recipe describes: precision, clipping, accumulation, loggers, checkpoints, strategy."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import tiny_recipe
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelSummary
from lightning.pytorch.strategies import FSDPStrategy

from f2tune.errors import RecipeError
from f2tune.recipe import validate_recipe
from f2tune.train.fsdp import FSDP_WRAPPED_LAYERS
from f2tune.train.loggers import CSVSteps, TensorBoardSteps
from f2tune.train.trainer import LAUNCHER_VARIABLES, build_strategy, build_trainer


def test_trainer_follows_the_recipe(tmp_path):
    raw = tiny_recipe(
        tmp_path, optim={"grad_clip": 0.5, "accumulate": 4}, trainer={"precision": "bf16-mixed", "save_top_k": 2}
    )
    trainer = build_trainer(validate_recipe(raw), tmp_path / "run")
    assert trainer.gradient_clip_val == 0.5 and trainer.accumulate_grad_batches == 4
    assert trainer.precision == "bf16-mixed"
    assert {type(x) for x in trainer.loggers} == {CSVSteps, TensorBoardSteps}
    best, last = trainer.checkpoint_callbacks
    assert (best.monitor, best.mode, best.save_top_k) == ("val/loss", "min", 2)
    assert (last.filename, last.monitor, last.save_top_k) == ("last", None, 1)  # last.ckpt at every validation
    assert not any(isinstance(c, EarlyStopping) for c in trainer.callbacks)
    assert not any(isinstance(c, ModelSummary) for c in trainer.callbacks)  # f2tune reports parameters itself


def test_patience_adds_early_stopping_on_the_monitor(tmp_path):
    trainer = {"monitor": "val/CAPTION/exact_match", "early_stopping_patience": 3}
    built = build_trainer(validate_recipe(tiny_recipe(tmp_path, trainer=trainer)), tmp_path / "run", "max")
    (stopper,) = [c for c in built.callbacks if isinstance(c, EarlyStopping)]
    assert (stopper.monitor, stopper.patience, stopper.mode) == ("val/CAPTION/exact_match", 3, "max")
    assert built.checkpoint_callback.mode == "max"


def test_fsdp_is_opt_in_and_wraps_each_layer(tmp_path):
    lora = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, trainer={"strategy": "fsdp"}))
    strategy = build_strategy(lora)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True  # peft freezes most of each FSDP unit
    assert "auto_wrap_policy" in strategy.kwargs
    assert build_strategy(validate_recipe(tiny_recipe(tmp_path))) == "auto"
    assert FSDP_WRAPPED_LAYERS


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"precision": "16-mixed"}, "trainer.precision 16-mixed needs a GPU"),  # Lightning ran it as bf16-mixed
        ({"num_nodes": 2}, "trainer.num_nodes is 2, but no launcher started this command"),  # it waited forever
        ({"devices": [0, 1]}, "trainer settings cannot run here: `devices` selected with `CPUAccelerator`"),
        # Lightning refuses its FSDPStrategy on a CPU but not f2tune's subclass; torch failed in setup
        ({"strategy": "fsdp"}, "trainer.strategy fsdp needs CUDA GPUs, not accelerator cpu: use ddp"),
        ({"strategy": "fsdp", "accelerator": "auto"}, "trainer.strategy fsdp needs CUDA GPUs, and torch sees none"),
    ],
)
def test_settings_lightning_would_run_otherwise_or_not_at_all_are_refused(tmp_path, monkeypatch, trainer, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without GPUs
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RecipeError, match=re.escape(message)):
        build_trainer(validate_recipe(tiny_recipe(tmp_path, trainer=trainer)), tmp_path / "run")


def test_a_run_without_loggers_builds(tmp_path):
    """Lightning's learning-rate monitor refuses a trainer without loggers: it is left out then."""
    trainer = build_trainer(validate_recipe(tiny_recipe(tmp_path, trainer={"loggers": []})), tmp_path / "run")
    assert not trainer.loggers and not any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks)


@pytest.mark.parametrize(("length", "description"), [({"max_steps": 6}, "Epoch 3"), ({"max_epochs": 5}, "Epoch 3/4")])
def test_the_progress_bar_gives_an_epoch_total_only_when_there_is_one(tmp_path, length, description):
    raw = tiny_recipe(tmp_path)
    raw["trainer"] = {**{k: v for k, v in raw["trainer"].items() if k not in ("max_steps", "max_epochs")}, **length}
    trainer = build_trainer(validate_recipe(raw), tmp_path / "run")
    bar = trainer.progress_bar_callback
    bar.setup(trainer, None, "fit")
    assert bar._get_train_description(3).strip() == description  # Lightning 2.6 alone: "Epoch 3/-2" by max_steps
    assert "v_num" not in bar.get_metrics(trainer, None)
