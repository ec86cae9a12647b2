"""`Florence2DaViT`: f2tune's DaViT feature extractor behind mmseg's backbone contract."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from f2tune.vision.extractor import DaViTFeatureExtractor
from f2tune.vision.weights import load_davit_weights, vision_config_from


@MODELS.register_module()
class Florence2DaViT(BaseModule):
    """Returns the stage maps chosen by `out_indices` (strides 4, 8, 16, 32) as a tuple of NCHW tensors.

    `config` and `weights` take "base" / "large" or a Florence-2 checkpoint (Hub id, folder, f2tune
    full or LoRA export). The shape is read from `config` when the model is built; the weights are
    copied in `init_weights()`, which mmengine's Runner calls once, as it does for every pretrained
    backbone (call it yourself when building with `MODELS.build` alone). Empty `weights` keeps the
    random initialization.
    """

    def __init__(
        self,
        config: str = "base",
        weights: str = "",
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = 0,
        drop_path_rate: float = 0.3,
        gradient_checkpointing: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        if init_cfg is not None and weights:
            raise ValueError("Florence2DaViT takes its pretrained encoder from `weights`; leave init_cfg unset")
        super().__init__(init_cfg=init_cfg)
        self.weights = weights
        self.extractor = DaViTFeatureExtractor(
            vision_config_from(config),
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            drop_path_rate=drop_path_rate,
            gradient_checkpointing=gradient_checkpointing,
        )
        self.channels = [info.channels for info in self.extractor.feature_info]

    def init_weights(self) -> None:
        if self.weights:
            load_davit_weights(self.extractor, self.weights)
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.extractor(images))
