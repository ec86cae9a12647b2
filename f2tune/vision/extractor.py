"""The DaViT vision tower of Florence-2 as a multi-scale feature extractor (strides 4, 8, 16, 32).

Florence-2 only uses the last DaViT stage, but detection and segmentation heads (FPN, UperNet) need all
four. The transformers `Florence2VisionBackbone` modules are reused as they are, so the weights and
the numerics are those of the vision tower inside `Florence2ForConditionalGeneration`; only the loop
over stages is ours, to collect the stage outputs, freeze early stages and checkpoint blocks.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import Florence2Config, Florence2VisionBackbone, Florence2VisionConfig

from f2tune.log import warn

SIZE_DIVISOR = 32
"""Inputs are padded (right, bottom) to a multiple of the last stage's stride, then outputs cropped."""

_SIZES: dict[str, dict] = {
    "base": {
        "embed_dim": [128, 256, 512, 1024],
        "num_heads": [4, 8, 16, 32],
        "num_groups": [4, 8, 16, 32],
        "projection_dim": 768,
    },
    "large": {
        "embed_dim": [256, 512, 1024, 2048],
        "num_heads": [8, 16, 32, 64],
        "num_groups": [8, 16, 32, 64],
        "projection_dim": 1024,
    },
}


@dataclass(frozen=True)
class FeatureInfo:
    """What one output map holds: what a head needs to build its input layers."""

    channels: int
    stride: int


def davit_config(size: Literal["base", "large"]) -> Florence2VisionConfig:
    """The vision config of `florence-community/Florence-2-{size}` (depths 1,1,9,1, window 12,
    drop path 0.1, projection to the language model's width)."""
    if size not in _SIZES:
        raise ValueError(f"unknown DaViT size {size!r}; expected one of {sorted(_SIZES)}")
    return Florence2VisionConfig(depths=[1, 1, 9, 1], window_size=12, **_SIZES[size])


def stage_strides(config: Florence2VisionConfig) -> list[int]:
    """Cumulative stride of each stage's output (4, 8, 16, 32 for every released Florence-2)."""
    return [math.prod(config.patch_stride[: i + 1]) for i in range(len(config.depths))]


class DaViTFeatureExtractor(nn.Module):
    """Runs the DaViT stage by stage and returns the chosen stage maps as NCHW tensors.

    Any input size works: the image is zero-padded to a multiple of 32 (said once per extractor
    through `f2tune.log.warn`) and each output is cropped back to ceil(size / stride), so a head sees
    maps that cover exactly the image.
    """

    def __init__(
        self,
        config: Florence2VisionConfig | Florence2Config,
        out_indices: tuple[int, ...] | list[int] = (0, 1, 2, 3),
        frozen_stages: int = 0,
        drop_path_rate: float | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        vision = copy.deepcopy(config.vision_config if isinstance(config, Florence2Config) else config)
        if drop_path_rate is not None:
            vision.drop_path_rate = drop_path_rate
        num_stages = len(vision.depths)
        out_indices = [i + num_stages if -num_stages <= i < 0 else i for i in out_indices]  # -1: the last, as in timm
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..{num_stages - 1}, got {out_indices}")
        if not 0 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be in 0..{num_stages}, got {frozen_stages}")
        self.davit = Florence2VisionBackbone(vision)
        self.out_indices = tuple(sorted(out_indices))
        self.frozen_stages = frozen_stages
        self.gradient_checkpointing = gradient_checkpointing
        self.strides = stage_strides(vision)
        self.feature_info = [FeatureInfo(vision.embed_dim[i], self.strides[i]) for i in self.out_indices]
        self._warned_padding = False
        self._freeze()
        for stage in range(self.out_indices[-1] + 1, num_stages):
            # Never run (`forward` stops at the last stage asked for): trainable, they would get no
            # gradient, which DDP without find_unused_parameters (detectron2's and mmengine's
            # default) stops on at the second step. Kept, so that checkpoints load whole.
            self.davit.convs[stage].requires_grad_(False)
            self.davit.blocks[stage].requires_grad_(False)

    @property
    def config(self) -> Florence2VisionConfig:
        return self.davit.config

    def _frozen_modules(self) -> list[nn.Module]:
        """Stage i is its patch embedding (`convs[i]`) and its blocks (`blocks[i]`)."""
        return [m for i in range(self.frozen_stages) for m in (self.davit.convs[i], self.davit.blocks[i])]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> DaViTFeatureExtractor:
        """Frozen stages stay in eval mode (no drop path) whatever the trainer switches to."""
        super().train(mode)
        self._freeze()
        return self

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        height, width = pixel_values.shape[-2:]
        pad_h, pad_w = -height % SIZE_DIVISOR, -width % SIZE_DIVISOR
        if (pad_h or pad_w) and not self._warned_padding:
            warn(
                f"DaViT input {height}x{width} is padded to a multiple of {SIZE_DIVISOR}; "
                "outputs are cropped back to ceil(size / stride) (said once)"
            )
            self._warned_padding = True
        hidden = F.pad(pixel_values, (0, pad_w, 0, pad_h)).to(self.davit.convs[0].conv.weight.dtype)
        outputs = []
        for stage, (conv, blocks) in enumerate(zip(self.davit.convs, self.davit.blocks)):
            hidden = conv(hidden)
            for block in blocks:
                if self.gradient_checkpointing and self.training and stage >= self.frozen_stages:
                    hidden = checkpoint(block, hidden, use_reentrant=False)
                else:
                    hidden = block(hidden)
            if stage in self.out_indices:
                stride = self.strides[stage]
                outputs.append(hidden[..., : math.ceil(height / stride), : math.ceil(width / stride)])
            if stage == self.out_indices[-1]:
                break
        return outputs
