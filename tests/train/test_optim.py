"""Optimizer and schedule: no decay on biases and norms; warmup then decay, per optimizer step."""

from __future__ import annotations

import pytest
import torch

from f2tune.config import OptimConfig
from f2tune.train.optim import build_optimizer, build_scheduler, parameter_groups


def test_biases_and_norm_weights_get_no_weight_decay(tiny_model):
    decay, no_decay = parameter_groups(tiny_model, 0.05)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(n.endswith("bias") or "norm" in n for n in no_decay_names)
    assert any("layernorm" in n or "layer_norm" in n for n in no_decay_names)
    assert all(p.ndim >= 2 for p in decay["params"])


def test_frozen_parameters_are_not_given_to_the_optimizer(tiny_model):
    for p in tiny_model.model.vision_tower.parameters():
        p.requires_grad_(False)
    optimizer = build_optimizer(tiny_model, OptimConfig(), "32-true")
    given = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not given & {id(p) for p in tiny_model.model.vision_tower.parameters()}


@pytest.mark.parametrize(("precision", "fused"), [("32-true", True), ("bf16-mixed", True), ("16-mixed", False)])
def test_fused_unless_fp16_loss_scaling(tiny_model, precision, fused):
    """A fused step unscales fp16 gradients itself, too late for clipping: 16-mixed keeps the loop."""
    assert bool(build_optimizer(tiny_model, OptimConfig(), precision).defaults["fused"]) is fused


def test_fused_adamw_on_cpu_matches_the_per_tensor_loop(tiny_model):
    optimizer = build_optimizer(tiny_model, OptimConfig(lr=1e-2), "32-true")
    assert optimizer.defaults["fused"]
    reference = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "fused"} | {"params": [p.detach().clone() for p in g["params"]]}
         for g in optimizer.param_groups], fused=False,
    )  # fmt: skip
    for group, twin in zip(optimizer.param_groups, reference.param_groups):
        for param, copy in zip(group["params"], twin["params"]):
            param.grad = torch.full_like(param, 0.5)
            copy.grad = param.grad.clone()
    for _ in range(3):
        optimizer.step()
        reference.step()
    for group, twin in zip(optimizer.param_groups, reference.param_groups):
        for param, copy in zip(group["params"], twin["params"]):
            torch.testing.assert_close(param.detach(), copy, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay(tiny_model, schedule):
    config = OptimConfig(lr=1.0, warmup_steps=10, schedule=schedule)
    optimizer = build_optimizer(tiny_model, config, "32-true")
    scheduler = build_scheduler(optimizer, config, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[99] < 0.05 and lrs[50] < 1.0


def test_warmup_ratio_and_constant(tiny_model):
    config = OptimConfig(lr=1.0, warmup_ratio=0.1, schedule="constant")
    optimizer = build_optimizer(tiny_model, config, "32-true")
    scheduler = build_scheduler(optimizer, config, total_steps=50)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)
