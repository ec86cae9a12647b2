"""Builders shared by tests in several folders (importable as `helpers`: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

from f2tune.config import TINY_MODEL
from f2tune.testing.shapes import shape_samples


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
