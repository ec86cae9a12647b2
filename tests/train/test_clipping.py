"""Gradient clipping where Lightning refuses to: the fused AdamW under bf16-mixed (a fit runs, norms
are clipped) and norm clipping under FSDP (handed to the root FSDP module; FSDP itself needs CUDA)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from helpers import tiny_recipe
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy

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
    module._trainer = SimpleNamespace(strategy=None, precision_plugin=MixedPrecision("bf16-mixed", "cpu"))
    optimizer = build_optimizer(tiny_model, recipe.optim, "bf16-mixed")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for param in params:
        param.grad = torch.full_like(param, 3.0)
    module.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    torch.testing.assert_close(norm, torch.tensor(0.5), rtol=1e-4, atol=1e-6)


class RootModule:
    """Stands in for the FSDP-wrapped root module: records what it was asked to clip to."""

    def __init__(self) -> None:
        self.clipped_to: float | None = None

    def clip_grad_norm_(self, max_norm: float) -> None:
        self.clipped_to = max_norm


def test_fsdp_norm_clipping_goes_to_the_root_module(tiny_model, tmp_path) -> None:
    recipe = validate_recipe(tiny_recipe(tmp_path, eval={"metric": "none"}))
    module = Florence2Module(tiny_model, build_tiny_processor(), recipe)
    strategy = FSDPStrategy()
    strategy.model = root = RootModule()
    module._trainer = SimpleNamespace(strategy=strategy, precision_plugin=None)
    optimizer = build_optimizer(tiny_model, recipe.optim, "32-true")
    module.configure_gradient_clipping(optimizer, gradient_clip_val=0.7, gradient_clip_algorithm="norm")
    assert root.clipped_to == 0.7
