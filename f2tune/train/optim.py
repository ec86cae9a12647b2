"""AdamW with decay only on weight matrices, a learning rate per model part, and a warmup + decay
schedule stepped per optimizer step."""

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
from f2tune.config.sections import warmup_too_long
from f2tune.errors import RecipeError
from f2tune.log import warn
from f2tune.train.fsdp import unwrapped_name

SCHEDULES = {
    "cosine": get_cosine_schedule_with_warmup,
    "linear": get_linear_schedule_with_warmup,
}


PART_OF_NAME = re.compile(r"(?:^|\.)model\.(vision_tower|multi_modal_projector|language_model)\.")
"""The part a parameter belongs to, from its name (after an optional peft `base_model.model.` prefix)."""

PARTS = {"vision_tower": "vision_tower", "multi_modal_projector": "projector", "language_model": "language_model"}


def decayed_weights(model: nn.Module) -> frozenset[str]:
    """The names of `model`'s matrices and convolutions, which weight decay applies to. Taken before
    FSDP wraps the model: its units then show every weight as a flat 1-D shard."""
    return frozenset(name for name, param in model.named_parameters() if param.ndim >= 2)


def parameter_groups(model: nn.Module, config: OptimConfig, decayed: frozenset[str] | None = None) -> list[dict]:
    """The trainable weights by model part, each part at `lr * optim.lr_scale[part]`, named `part`
    (matrices and convolutions: decayed) and `part-no_decay` (biases and norm weights, 1-D: shrinking
    a LayerNorm gain or a bias towards zero is not regularisation but damage). The names are what
    the learning-rate logs show. Empty groups are left out, so the groups depend on what trains and
    not on `lr_scale`: a resumed run may change the scales. `decayed`: `decayed_weights` of the
    model before FSDP wrapped it (default: of `model` as it is)."""
    decayed = decayed_weights(model) if decayed is None else decayed
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        found = PART_OF_NAME.search(name)
        part = PARTS[found.group(1)] if found else "language_model"  # lm_head (tied to the token table)
        decays = unwrapped_name(name) in decayed
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


def build_optimizer(
    model: nn.Module, config: OptimConfig, precision: str, decayed: frozenset[str] | None = None
) -> torch.optim.Optimizer:
    """AdamW, fused where torch has the kernel, except under `16-mixed`: a fused step unscales fp16
    gradients itself, after Lightning would have clipped them still scaled, so that case gets the
    per-tensor loop and Lightning's unscale-then-clip. `decayed`: as in `parameter_groups`."""
    groups = parameter_groups(model, config, decayed)
    fused = precision != "16-mixed" and all(p.device.type in FUSED_DEVICES for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused or None)


def group_settings(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each parameter group's hyperparameters (lr, weight decay, betas...), before a scheduler or a
    checkpoint changes them."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def follow_recipe_settings(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, settings: list[dict]
) -> None:
    """Give the groups the recipe's hyperparameters again after Lightning restored a checkpoint
    (`--resume`): `load_state_dict` brings back the checkpoint's own lr, weight decay and betas with
    the moments, and the scheduler its base learning rates, so a resumed run's new `optim.lr`,
    `lr_scale` or `weight_decay` would be logged as changed and not be used. The learning rate is
    the recipe's at the restored step of its schedule. A run that did not resume is left as it is."""
    scheduler.base_lrs = [setting["lr"] for setting in settings]
    for group, setting, factor in zip(optimizer.param_groups, settings, scheduler.lr_lambdas):
        group.update(setting, initial_lr=setting["lr"], lr=setting["lr"] * factor(scheduler.last_epoch))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`total_steps` are optimizer steps (after accumulation), as Lightning estimates them. A run
    whose length is set by `trainer.max_epochs` learns its step count only here, after the data is
    read: a warmup as long as that is refused now (the recipe check covers `trainer.max_steps`)."""
    if config.warmup_steps >= total_steps:
        raise RecipeError(warmup_too_long(config.warmup_steps, f"the whole run is {total_steps} optimizer step(s)"))
    warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)
    if config.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return SCHEDULES[config.schedule](optimizer, warmup, max(total_steps, 1))
