"""AdamW with decay only on weight matrices, and a warmup + decay schedule stepped per optimizer step."""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from f2tune.config import OptimConfig
from f2tune.log import warn

SCHEDULES = {
    "cosine": get_cosine_schedule_with_warmup,
    "linear": get_linear_schedule_with_warmup,
}


PART_OF_NAME = re.compile(r"(?:^|\.)model\.(vision_tower|multi_modal_projector|language_model)\.")
"""The part a parameter belongs to, from its name (after an optional peft `base_model.model.` prefix)."""

PARTS = {"vision_tower": "vision_tower", "multi_modal_projector": "projector", "language_model": "language_model"}


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices and convolutions decay; biases and norm weights (1-D tensors) do not,
    since shrinking a LayerNorm gain or a bias towards zero is not regularisation but damage."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def scaled_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """`parameter_groups` split by model part, each part at `lr * optim.lr_scale[part]`, named
    `part` / `part-no_decay` (the names the learning-rate logs show). Empty groups are left out."""
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        found = PART_OF_NAME.search(name)
        part = PARTS[found.group(1)] if found else "language_model"  # lm_head (tied to the token table)
        decays = param.ndim >= 2
        group = groups.setdefault((part, decays), {
            "params": [], "weight_decay": config.weight_decay if decays else 0.0,
            "lr": config.lr * config.lr_scale.get(part, 1.0), "name": part + ("" if decays else "-no_decay"),
        })  # fmt: skip
        group["params"].append(param)
    for part in sorted(set(config.lr_scale) - {part for part, _ in groups}):
        warn(f"optim.lr_scale.{part}: {part} has no trainable parameter (frozen, or LoRA leaves it out); ignored")
    return list(groups.values())


FUSED_DEVICES = ("cuda", "cpu")
"""Where torch has a fused AdamW kernel. On a CPU it is 4-5x faster than the default per-tensor loop
(Florence-2-base: 157 vs 617 ms per step, 1 thread; benchmarks/README.md)."""


def build_optimizer(model: nn.Module, config: OptimConfig, precision: str) -> torch.optim.Optimizer:
    """AdamW, fused where torch has the kernel, except under `16-mixed`: a fused step unscales fp16
    gradients itself, after Lightning would have clipped them still scaled, so that case gets the
    per-tensor loop and Lightning's unscale-then-clip."""
    if config.lr_scale:
        groups = scaled_groups(model, config)
    else:
        groups = [g for g in parameter_groups(model, config.weight_decay) if g["params"]]
    fused = precision != "16-mixed" and all(p.device.type in FUSED_DEVICES for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused or None)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`total_steps` are optimizer steps (after accumulation), as Lightning estimates them."""
    warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)
    if config.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return SCHEDULES[config.schedule](optimizer, warmup, max(total_steps, 1))
