"""Gradient clipping with the fused AdamW under bf16-mixed (Lightning refuses to clip for fused
optimizers under any mixed precision; f2tune clips those itself): a fit runs, and norms are clipped."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from helpers import tiny_recipe
from lightning.pytorch.plugins.precision import MixedPrecision

from f2tune.recipe import validate_recipe
from f2tune.testing.tiny import build_tiny_processor
from f2tune.train.module import Florence2Module
from f2tune.train.optim import build_optimizer
from f2tune.train.run import fit


def test_bf16_mixed_fit_with_clipping_and_fused_adamw(tmp_path) -> None:
    raw = tiny_recipe(tmp_path, trainer={"precision": "bf16-mixed", "max_steps": 2}, eval={"before_fit": False})
    recipe = validate_recipe(raw)
    assert recipe.optim.grad_clip
    result = fit(recipe)
    assert math.isfinite(result.metrics_after["val/loss"])


def test_bf16_mixed_clips_to_the_norm(tiny_model, tmp_path) -> None:
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"precision": "bf16-mixed"}, eval={"metric": "none"}))
    module = Florence2Module(tiny_model, build_tiny_processor(), recipe)
    module._trainer = SimpleNamespace(precision_plugin=MixedPrecision("bf16-mixed", "cpu"))
    optimizer = build_optimizer(tiny_model, recipe.optim, "bf16-mixed")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for param in params:
        param.grad = torch.full_like(param, 3.0)
    module.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    torch.testing.assert_close(norm, torch.tensor(0.5), rtol=1e-4, atol=1e-6)
