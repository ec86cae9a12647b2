"""Gradient clipping where Lightning's own is slower or refuses to clip."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy

from f2tune.train.guards import NonFiniteGuard, parameters_with_gradients


def clip_gradients(trainer: pl.Trainer, optimizer: torch.optim.Optimizer, value: float, algorithm: str | None) -> bool:
    """Clips `optimizer`'s gradients and says so, or returns False where Lightning's clipping serves.

    Norm clipping takes the norm `NonFiniteGuard` has just measured of the same gradients (one pass
    over them, not two). Two cases Lightning refuses: a fused optimizer under bf16-mixed (Lightning
    refuses fused optimizers under any mixed precision, though bf16 has no loss scaling and the
    gradients are true values), and norm clipping under FSDP, which only the root FSDP module can
    do (each rank holds a shard: `torch.nn.utils.clip_grad_norm_` would see a local norm)."""
    strategy, plugin = trainer.strategy, trainer.precision_plugin
    norm = algorithm in (None, "norm")
    if norm and isinstance(strategy, FSDPStrategy):
        strategy.model.clip_grad_norm_(value)
        return True
    params = parameters_with_gradients(optimizer)
    measured = next((c.gradient_norm for c in trainer.callbacks if isinstance(c, NonFiniteGuard)), None)
    if norm and measured is not None:
        torch.nn.utils.clip_grads_with_norm_(params, value, measured)
        return True
    if isinstance(plugin, MixedPrecision) and plugin.scaler is None:
        if algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, value)
        else:
            torch.nn.utils.clip_grad_norm_(params, value)
        return True
    return False
