"""Assembling a run from a recipe: data, trainer, processor and model, in the order that makes
mistakes cheap (bad records and impossible trainer settings fail before any weights load)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from torch import nn

from f2tune.config import AugmentConfig, LoraSettings, Recipe
from f2tune.config.base import Section
from f2tune.data.collate import target_limit_problem
from f2tune.data.datamodule import STAGE_SPLITS, Florence2DataModule
from f2tune.errors import RecipeError
from f2tune.eval.evaluator import check_metric_fits
from f2tune.log import say, warn
from f2tune.model.adapt import apply_adaptation, freeze_parts
from f2tune.model.compile import compile_blocks
from f2tune.model.loading import attach_adapter, load_model, load_processor
from f2tune.model.report import parameter_report
from f2tune.train.feature_cache import why_not_cacheable
from f2tune.train.module import Florence2Module
from f2tune.train.monitor import monitor_mode, monitored_tasks
from f2tune.train.trainer import build_trainer


def run_dir_of(recipe: Recipe) -> Path:
    """The run's folder: `trainer.run_name` in `trainer.output_dir` (a recipe validated without its
    file, which names the run when the recipe does not, falls back to `run`)."""
    return Path(recipe.trainer.output_dir) / (recipe.trainer.run_name or "run")


def assemble(
    recipe: Recipe, run_dir: Path, extra_callbacks: list[pl.Callback] | None = None, stage: str = "fit"
) -> tuple[pl.Trainer, Florence2Module, Florence2DataModule]:
    """Trainer, module and datamodule for `recipe`, writing into `run_dir`; the data of the splits
    that `stage` (`fit`, `validate`, `test`) uses is read now."""
    _warn_ignored_settings(recipe, stage)
    datamodule = Florence2DataModule(recipe.data, seed=recipe.trainer.seed)
    datamodule.setup(stage)
    val_tasks = datamodule.tasks(("val",)) if "val" in STAGE_SPLITS[stage] else monitored_tasks(recipe.trainer.monitor)
    check_metric_fits(datamodule.tasks(), recipe.eval)  # the tasks the module will evaluate
    trainer = build_trainer(recipe, run_dir, monitor_mode(recipe, val_tasks), extra_callbacks)
    processor = datamodule.processor = load_processor(recipe.model)
    model = build_trainable_model(recipe)
    datamodule.max_input_tokens = _checked_text_positions(model, recipe)
    module = Florence2Module(
        model, processor, recipe, eval_tasks=datamodule.tasks(), output_dir=run_dir, cache_features=stage == "fit"
    )
    if module.feature_cache is not None:
        datamodule.images_cached = module.feature_cache.complete
    return trainer, module, datamodule


def build_trainable_model(recipe: Recipe) -> nn.Module:
    """Load the base model, enable gradient checkpointing if asked, apply LoRA/freezing, report.

    With `model.adapter`, a LoRA recipe trains that adapter's weights further (its checkpoints keep
    the same `...lora_A.default.weight` keys as a fresh LoRA run); a full recipe merges it first.
    """
    model = load_model(recipe.model)
    if recipe.trainer.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if recipe.model.adapter is None:
        model = apply_adaptation(model, recipe.adaptation, recipe.lora)
    elif recipe.adaptation.method == "lora":  # continue training the shared adapter's own LoRA weights
        model = attach_adapter(model, recipe.model, trainable=True)
        freeze_parts(model, recipe.adaptation.freeze)
    else:  # full fine-tuning starts from the base with the adapter merged in (peft froze the base: thaw it)
        merged = attach_adapter(model, recipe.model, trainable=False).merge_and_unload().requires_grad_(True)
        model = apply_adaptation(merged, recipe.adaptation, recipe.lora)
    report = parameter_report(model)
    say(report.describe())
    if report.trainable == 0:
        raise RecipeError("no parameter is trainable: adaptation.freeze and lora.target leave nothing to train")
    if recipe.trainer.compile:  # after LoRA, so its layers are compiled with the blocks they sit in
        compile_for_training(model, recipe)
    return model


def compile_for_training(model: nn.Module, recipe: Recipe) -> None:
    """`trainer.compile`, but for a vision tower the feature cache serves: that runs once per image,
    in batches of whatever size its misses make, where compiling would cost more than it saves."""
    cached = why_not_cacheable(model, recipe) is None
    count = compile_blocks(model, vision=not cached)
    tower = " (not the vision tower's: the feature cache runs it once per image)" if cached else ""
    say(f"torch.compile: {count} blocks compiled in place{tower}; the first steps compile each shape")


def _checked_text_positions(model: nn.Module, recipe: Recipe) -> int:
    """The positions of the model's text encoder and decoder (the prompt with its image tokens,
    and the target, must fit in them); a `data.max_target_tokens` beyond them is refused here,
    before a target that long stops training with an index error deep in the decoder."""
    positions = model.config.text_config.max_position_embeddings
    problem = target_limit_problem(recipe.data.max_target_tokens, positions)
    if problem is not None:
        raise RecipeError(problem)
    return positions


def _warn_ignored_settings(recipe: Recipe, stage: str) -> None:
    """Say which settings the recipe changes from their defaults that will not apply. Here, once per
    command, and not where a checkpoint's saved recipe rebuilds its model for an export. Values are
    compared with the defaults, not looked up among the keys given: a run's config.yaml lists every
    key, and a run started from it must not hear of settings nobody set."""
    if changed(recipe.lora, LoraSettings()):
        if recipe.adaptation.method != "lora":
            warn("the recipe sets `lora:` but adaptation.method is 'full': the LoRA settings are ignored")
        elif recipe.model.adapter is not None:
            warn("model.adapter is set: its adapter_config.json decides r, alpha and targets; `lora:` is ignored")
    if stage != "fit":
        return
    augment = recipe.data.augment
    if not augment.enabled and (knobs := changed(augment, AugmentConfig())):
        warn(
            f"data.augment sets {', '.join(knobs)} but data.augment.enabled is false: training images are not augmented"
        )
    elif augment.enabled and augment.is_noop:
        warn(
            "data.augment.enabled is true but sets no transform (hflip, scale, translate, rotate_degrees, "
            "color_jitter, hue): training images are not augmented"
        )
    if recipe.trainer.monitor != "val/loss" and not recipe.data.val:
        warn(
            f"trainer.monitor is {recipe.trainer.monitor!r} but data.val is empty: nothing is validated, so no best "
            "checkpoint is kept"
        )


def changed(section: Section, defaults: Section) -> list[str]:
    """The keys of `section` whose values differ from `defaults`'."""
    return [key for key in type(section).model_fields if getattr(section, key) != getattr(defaults, key)]
