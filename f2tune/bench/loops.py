"""The two training loops being compared, each timed per step over two passes on the same batches.

The first pass is the warm-up (allocator, kernels, and the image feature cache filling up); the
reported step time is the median of the second pass. Data loading is outside the timings: every
batch is collated beforehand, so both sides measure forward + backward + optimizer step only.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader

from f2tune.bench.measure import Timing, reset_peak_memory, sync, timing_of
from f2tune.bench.setups import build_model
from f2tune.config import TINY_MODEL
from f2tune.model.adapt import LORA_PRESETS, apply_adaptation
from f2tune.recipe import validate_recipe
from f2tune.train.feature_cache import FROZEN_PARTS
from f2tune.train.guards import NonFiniteGuard
from f2tune.train.module import Florence2Module
from f2tune.train.setup import compile_for_training


def run_reference(
    size: str, mode: str, processor, batches: list[dict], device: torch.device, precision: str = "32-true"
) -> Timing:
    """transformers + peft + torch AdamW, as the public Florence-2 fine-tuning notebooks do it: no
    attention mask passed, padded labels trained on, no gradient clipping, no caching; fp32, or
    with `bf16-mixed` the forward under `torch.autocast`, as the tutorials on mixed precision do."""
    reset_peak_memory(device)
    model = build_model(size, processor)
    if mode == "lora":
        config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_PRESETS["language"])
        model = get_peft_model(model, config)
    if mode == "frozen":
        for part in FROZEN_PARTS:
            getattr(model.model, part).requires_grad_(False)
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(2):
        times = []
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            sync(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            sync(device)
            times.append(time.perf_counter() - start)
    return timing_of(times, sum(len(b["labels"]) for b in batches), device)


class StepTimer(pl.Callback):
    """Seconds per training batch (forward, backward, clipping, optimizer step, Lightning's logging)."""

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        sync(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        sync(pl_module.device)
        self.times.setdefault(trainer.current_epoch, []).append(time.perf_counter() - self._start)


def f2tune_recipe(mode: str, batch_size: int, precision: str, cache: str) -> Any:
    """The recipe f2tune would run for this mode; the model is built here, not from `model`."""
    adaptation: dict = {"method": "lora"} if mode == "lora" else {}
    if mode == "frozen":
        adaptation["freeze"] = {"vision_tower": True, "projector": True}
    return validate_recipe(
        {
            "model": {"name_or_path": TINY_MODEL},
            "adaptation": adaptation,
            "data": {"train": [{"format": "shapes"}], "batch_size": batch_size},
            "optim": {"lr": 1e-5},
            "trainer": {"max_epochs": 2, "precision": precision, "cache_image_features": cache, "loggers": []},
            "eval": {"metric": "none"},
        }
    )


def _identity(batch: dict) -> dict:
    return batch


def run_f2tune(
    size: str,
    mode: str,
    processor,
    batches: list[dict],
    device: torch.device,
    precision: str,
    cache: str,
    compiled: bool = False,
) -> Timing:
    """The real `Florence2Module` (its training_step, configure_optimizers) under a Lightning Trainer
    with the recipe's precision, gradient clipping and non-finite guard (one gradient check per
    step, which every run pays); no checkpoints, loggers or validation. With
    `compiled`, the blocks are compiled as `trainer.compile` does; the warm-up pass pays for it."""
    reset_peak_memory(device)
    recipe = f2tune_recipe(mode, len(batches[0]["labels"]), precision, cache)
    model = apply_adaptation(build_model(size, processor), recipe.adaptation, recipe.lora)
    if compiled:
        compile_for_training(model, recipe)
    module = Florence2Module(model, processor, recipe)
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        precision=precision,
        max_epochs=2,
        gradient_clip_val=recipe.optim.grad_clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer, NonFiniteGuard(recipe.trainer.max_nonfinite_steps)],
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False, collate_fn=_identity)
    trainer.fit(module, train_dataloaders=loader)
    timing = timing_of(timer.times[1], sum(len(b["labels"]) for b in batches), device)
    timing.warmup_s = sum(timer.times[0])
    return timing
