"""FSDP as f2tune runs it: one FSDP unit per BART layer and DaViT block, one wrapping for the whole run.

Lightning's `FSDPStrategy` wraps the LightningModule at each `trainer.validate` / `trainer.fit` it
sets up. `f2tune fit` runs several on one module (the validation before training, training, the
validation after it): at the second, Lightning finds FSDP units inside the module, takes it as
wrapped by the user and skips the root wrapper, whose weights (the patch convolutions, the
embeddings, the norms, the projector) then stay flat shards and the first forward fails
("weight should have at least three dimensions"). Here the first wrapper is kept and handed back.
"""

from __future__ import annotations

import re
import warnings

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torch.distributed.fsdp._common_utils import clean_tensor_name
from transformers.models.bart.modeling_bart import BartDecoderLayer, BartEncoderLayer
from transformers.models.florence2.modeling_florence2 import Florence2VisionBlock

from f2tune.config import Recipe
from f2tune.errors import RecipeError
from f2tune.log import say

FSDP_WRAPPED_LAYERS = {BartEncoderLayer, BartDecoderLayer, Florence2VisionBlock}
"""Each transformer layer becomes its own FSDP unit: weights are gathered one layer at a time."""

MIXED_UNIT = re.compile(r".* has both parameters with requires_grad=True and False", re.DOTALL)
"""torch's warning, once per FSDP unit, with every parameter name, for a unit of frozen and trainable weights."""


class LayerwiseFSDP(FSDPStrategy):
    """Lightning's FSDP strategy, wrapping the module once however many stages run on it."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(
            # Lightning keeps use_orig_params=True, which LoRA needs (frozen and trainable weights share units).
            auto_wrap_policy=FSDP_WRAPPED_LAYERS,
            activation_checkpointing_policy=FSDP_WRAPPED_LAYERS if recipe.trainer.gradient_checkpointing else None,
        )
        self._wrapped: nn.Module | None = None

    def _setup_model(self, model: nn.Module) -> nn.Module:
        if self._wrapped is not None and self._wrapped.module is model:
            return self._wrapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", message=MIXED_UNIT.pattern)
            self._wrapped = super()._setup_model(model)
        mixed = [w for w in caught if MIXED_UNIT.match(str(w.message))]
        for other in (w for w in caught if w not in mixed):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        if mixed and self.global_rank == 0:
            say(
                f"fsdp: {len(mixed)} layers hold frozen and trainable weights in one unit (LoRA): their gradient "
                "buffers are the size of the whole layer's shard, as in full fine-tuning; ddp keeps only the "
                "adapters' gradients"
            )
        return self._wrapped


def check_fsdp_device(recipe: Recipe) -> None:
    """FSDP runs on CUDA GPUs. Lightning refuses its own `FSDPStrategy` elsewhere but lets a subclass
    such as `LayerwiseFSDP` through, and torch's FSDP then fails in setup, after the data is read."""
    cfg = recipe.trainer
    if cfg.strategy != "fsdp" or cfg.accelerator in ("cuda", "gpu"):
        return
    if cfg.accelerator != "auto":
        raise RecipeError(f"trainer.strategy fsdp needs CUDA GPUs, not accelerator {cfg.accelerator}: use ddp")
    if not torch.cuda.is_available():
        raise RecipeError("trainer.strategy fsdp needs CUDA GPUs, and torch sees none here: use ddp")


def unwrapped_name(name: str) -> str:
    """A parameter's name as in the model before FSDP and activation checkpointing wrapped its layers
    (`..._fsdp_wrapped_module.self_attn...` -> `...self_attn...`): checkpoints, the state dict and
    the names recorded before wrapping use these."""
    return clean_tensor_name(name)
