"""Builders shared by tests in several folders (importable as `helpers`: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from f2tune.config import TINY_MODEL
from f2tune.model.adapt import apply_adaptation
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.testing.tiny import build_tiny_model
from f2tune.train.module import Florence2Module

FROZEN = {"freeze": {"vision_tower": True, "projector": True}}
"""`adaptation:` with the vision tower and projector frozen: the image feature cache applies."""

IMAGE_BYTES = 10 * 32 * 4
"""One image's cached features in the tiny model: 10 image tokens of width 32, float32."""


def tiny_recipe(tmp_path: Path, **sections) -> dict:
    recipe = {
        "model": {"name_or_path": TINY_MODEL},
        "data": {
            "train": [{"format": "shapes", "num_samples": 16, "seed": 1}],
            "val": [{"format": "shapes", "num_samples": 8, "seed": 2}],
            "batch_size": 4,
            "num_workers": 0,
            "max_target_tokens": 16,
        },
        "optim": {"lr": 1e-3},
        "trainer": {
            "output_dir": str(tmp_path / "runs"),
            "run_name": "t",
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "max_steps": 4,
            "val_check_interval": 2,
            "check_val_every_n_epoch": None,
            "log_every_n_steps": 1,
            "loggers": ["csv", "tensorboard"],
        },
        "eval": {"metric": "exact_match", "max_samples": 4, "max_new_tokens": 6, "before_fit": True},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value}
    return recipe


def shape_records(count: int, prompt: str = "<CAPTION>") -> list[dict]:
    """JSONL records pointing at the images `write_jsonl` draws (ids shapes-5-0 .. 5-3)."""
    samples = shape_samples(4, seed=5)
    return [
        {"image": f"images/{samples[i % 4].id}.png", "prompt": prompt, "target": samples[i % 4].target}
        for i in range(count)
    ]


def tiny_module(
    processor, tmp_path: Path, adaptation=FROZEN, drop_path_rate: float = 0.0, **trainer
) -> Florence2Module:
    """The LightningModule of a tiny run, without a Trainer: the feature cache as the recipe decides."""
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation=adaptation, trainer=trainer, eval={"metric": "none"}))
    model = apply_adaptation(build_tiny_model(processor, drop_path_rate=drop_path_rate), recipe.adaptation, recipe.lora)
    return Florence2Module(model, processor, recipe, output_dir=tmp_path / "run")


class PixelsSent(pl.Callback):
    """Per training batch: its epoch and where its pixels are (None: the loader sent none)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, str | None]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pixels = batch["pixel_values"]
        self.batches.append((trainer.current_epoch, pixels.device.type if pixels is not None else None))
