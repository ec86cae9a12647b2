"""The Trainer the recipe describes: precision, clipping, accumulation, loggers, checkpoints, strategy."""

from __future__ import annotations

import pytest
from helpers import tiny_recipe
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy

from f2tune.errors import RecipeError
from f2tune.recipe import validate_recipe
from f2tune.train.trainer import FSDP_WRAPPED_LAYERS, build_strategy, build_trainer


def test_trainer_follows_the_recipe(tmp_path):
    raw = tiny_recipe(
        tmp_path, optim={"grad_clip": 0.5, "accumulate": 4}, trainer={"precision": "bf16-mixed", "save_top_k": 2}
    )
    trainer = build_trainer(validate_recipe(raw), tmp_path / "run")
    assert trainer.gradient_clip_val == 0.5 and trainer.accumulate_grad_batches == 4
    assert trainer.precision == "bf16-mixed"
    assert {type(x) for x in trainer.loggers} == {CSVLogger, TensorBoardLogger}
    checkpoint = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    assert checkpoint.save_last and checkpoint.monitor == "val/loss" and checkpoint.save_top_k == 2


def test_fsdp_is_opt_in_and_wraps_each_layer(tmp_path):
    lora = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, trainer={"strategy": "fsdp"}))
    strategy = build_strategy(lora)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True  # peft freezes most of each FSDP unit
    assert "auto_wrap_policy" in strategy.kwargs
    assert build_strategy(validate_recipe(tiny_recipe(tmp_path))) == "auto"
    assert FSDP_WRAPPED_LAYERS


def test_settings_this_machine_cannot_run_are_a_recipe_error(tmp_path):
    raw = tiny_recipe(tmp_path, trainer={"strategy": "fsdp"})  # accelerator: cpu
    with pytest.raises(RecipeError, match="trainer settings cannot run here: .*fsdp"):
        build_trainer(validate_recipe(raw), tmp_path / "run")
