"""Optimizer and schedule: no decay on biases and norms; warmup then decay, per optimizer step."""

from __future__ import annotations

import pytest
import torch

from f2tune.config import AdaptationConfig, LoraSettings, OptimConfig
from f2tune.errors import RecipeError
from f2tune.log import setup_logging
from f2tune.model.adapt import apply_adaptation
from f2tune.train.optim import build_optimizer, build_scheduler, parameter_groups


def test_biases_and_norm_weights_get_no_weight_decay(tiny_model):
    groups = parameter_groups(tiny_model, OptimConfig(weight_decay=0.05))
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    decay = [p for g in groups if not g["name"].endswith("-no_decay") for p in g["params"]]
    no_decay_names = {names[id(p)] for g in groups if g["name"].endswith("-no_decay") for p in g["params"]}
    assert {g["weight_decay"] for g in groups} == {0.05, 0.0}
    assert all(g["weight_decay"] == (0.0 if g["name"].endswith("-no_decay") else 0.05) for g in groups)
    assert all(n.endswith("bias") or "norm" in n for n in no_decay_names)
    assert any("layernorm" in n or "layer_norm" in n for n in no_decay_names)
    assert all(p.ndim >= 2 for p in decay)


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


def test_a_warmup_as_long_as_the_run_is_refused_once_its_length_is_known(tiny_model):
    """With trainer.max_epochs the step count is known only from the data: the recipe check cannot."""
    config = OptimConfig(warmup_steps=50)
    optimizer = build_optimizer(tiny_model, config, "32-true")
    with pytest.raises(RecipeError, match="optim.warmup_steps is 50, but the whole run is 40 optimizer step"):
        build_scheduler(optimizer, config, total_steps=40)


def test_lr_scale_gives_each_part_its_learning_rate(tiny_model):
    config = OptimConfig(lr=1e-3, weight_decay=0.05, lr_scale={"vision_tower": 0.1, "projector": 2.0})
    optimizer = build_optimizer(tiny_model, config, "32-true")
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert set(by_name) == {f"{part}{kind}" for part in ("vision_tower", "projector", "language_model")
                            for kind in ("", "-no_decay")}  # fmt: skip
    for group in optimizer.param_groups:
        part = group["name"].removesuffix("-no_decay")
        expected = {"vision_tower": 1e-4, "projector": 2e-3, "language_model": 1e-3}[part]
        assert group["lr"] == pytest.approx(expected)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("-no_decay") else 0.05)
        assert all(f"model.{'multi_modal_projector' if part == 'projector' else part}." in names[id(p)]
                   for p in group["params"])  # fmt: skip
    given = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(given) == sorted(id(p) for p in tiny_model.parameters())  # each weight once, none left out


def test_the_schedule_keeps_the_parts_ratio(tiny_model):
    config = OptimConfig(lr=1.0, warmup_steps=2, lr_scale={"vision_tower": 0.25})
    optimizer = build_optimizer(tiny_model, config, "32-true")
    scheduler = build_scheduler(optimizer, config, total_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert 0 < lrs["language_model"] < 1.0
    assert lrs["vision_tower"] == pytest.approx(0.25 * lrs["language_model"])


def test_lora_weights_follow_the_part_they_adapt(tiny_model):
    model = apply_adaptation(tiny_model, AdaptationConfig(method="lora"), LoraSettings(target="all"))
    optimizer = build_optimizer(model, OptimConfig(lr=1.0, lr_scale={"vision_tower": 0.5}), "32-true")
    names = {id(p): n for n, p in model.named_parameters()}
    (vision,) = [g for g in optimizer.param_groups if g["name"] == "vision_tower"]
    assert vision["lr"] == 0.5 and vision["params"]
    assert all("vision_tower" in names[id(p)] and "lora_" in names[id(p)] for p in vision["params"])


def test_a_scale_for_a_part_with_nothing_to_train_is_said(tiny_model, capsys):
    setup_logging()
    tiny_model.model.vision_tower.requires_grad_(False)
    optimizer = build_optimizer(tiny_model, OptimConfig(lr_scale={"vision_tower": 0.1}), "32-true")
    assert not any(g["name"].startswith("vision_tower") for g in optimizer.param_groups)
    assert "optim.lr_scale.vision_tower: vision_tower has no trainable parameter" in capsys.readouterr().err
