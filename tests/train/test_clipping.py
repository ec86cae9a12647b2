"""Gradient clipping: with the norm the non-finite guard has taken (one norm per step, also logged),
and where Lightning refuses to: the fused AdamW under bf16-mixed (a fit runs, norms are clipped) and
norm clipping under FSDP (handed to the root FSDP module; two processes clip so in tests/train/test_fsdp.py)."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import torch
from helpers import tiny_recipe
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy

from f2tune.recipe import validate_recipe
from f2tune.testing.tiny import build_tiny_processor
from f2tune.train.guards import NonFiniteGuard
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
    module._trainer = SimpleNamespace(
        strategy=None, precision_plugin=MixedPrecision("bf16-mixed", "cpu"), callbacks=[NonFiniteGuard(3)]
    )
    optimizer = build_optimizer(tiny_model, recipe.optim, "bf16-mixed")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for param in params:
        param.grad = torch.full_like(param, 3.0)
    module.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    torch.testing.assert_close(norm, torch.tensor(0.5), rtol=1e-4, atol=1e-6)


def test_norm_clipping_takes_the_guards_norm(tiny_model, tmp_path, monkeypatch) -> None:
    """The gradients are scaled by the norm the guard measured, without measuring them again."""
    recipe = validate_recipe(tiny_recipe(tmp_path, eval={"metric": "none"}))
    module = Florence2Module(tiny_model, build_tiny_processor(), recipe)
    guard = NonFiniteGuard(3)
    module._trainer = SimpleNamespace(strategy=None, precision_plugin=None, callbacks=[guard])
    optimizer = build_optimizer(tiny_model, recipe.optim, "32-true")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for param in params:
        param.grad = torch.full_like(param, 3.0)
    guard.gradient_norm = torch.tensor(6.0)  # twice the clip value: every gradient halves
    monkeypatch.setattr(torch, "_foreach_norm", None)  # a second norm would fail here
    module.configure_gradient_clipping(optimizer, gradient_clip_val=3.0, gradient_clip_algorithm="norm")
    assert all(torch.allclose(p.grad, torch.full_like(p, 1.5)) for p in params)


def test_one_gradient_norm_a_step_checks_clips_and_is_logged(tmp_path, monkeypatch) -> None:
    """A fit takes the gradients' norm once per optimizer step (the guard's check, clipping and
    `train/grad_norm` share it), and logs it at the steps the loggers write."""
    norms = []
    foreach_norm = torch._foreach_norm
    monkeypatch.setattr(torch, "_foreach_norm", lambda *a, **k: norms.append(1) or foreach_norm(*a, **k))
    raw = tiny_recipe(tmp_path, trainer={"log_every_n_steps": 2, "loggers": ["csv"]}, eval={"metric": "none"})
    raw["data"]["val"] = []
    result = fit(validate_recipe(raw))
    assert len(norms) == 4  # max_steps, one foreach pass each (all gradients share device and dtype)
    rows = list(csv.DictReader((result.run_dir / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    logged = {int(r["step"]): float(r["train/grad_norm"]) for r in rows if r.get("train/grad_norm")}
    assert sorted(logged) == [2, 4] and all(math.isfinite(v) and v > 0 for v in logged.values())


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
    module._trainer = SimpleNamespace(strategy=strategy, precision_plugin=None, callbacks=[])
    optimizer = build_optimizer(tiny_model, recipe.optim, "32-true")
    module.configure_gradient_clipping(optimizer, gradient_clip_val=0.7, gradient_clip_algorithm="norm")
    assert root.clipped_to == 0.7
