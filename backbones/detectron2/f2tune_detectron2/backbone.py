"""detectron2 `Backbone`s over f2tune's DaViT feature extractor: bare (`res2..res5`) and with FPN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from f2tune.vision.extractor import SIZE_DIVISOR, DaViTFeatureExtractor
from f2tune.vision.weights import load_davit_weights, vision_config_from

STAGE_NAMES = ("res2", "res3", "res4", "res5")
"""detectron2's names for the stride 4, 8, 16 and 32 maps, so FPN and ROI head configs carry over."""


class DaViT(Backbone):
    """The DaViT stages under detectron2's names, with their channels and strides.

    `config` and `weights` take "base" / "large" or a Florence-2 checkpoint (Hub id, folder, f2tune
    full or LoRA export); the shape is read from `config`, so a LazyConfig names a checkpoint twice
    and nothing else. Empty `weights` keeps the random initialization.
    """

    def __init__(
        self,
        config: str = "base",
        weights: str = "",
        out_features: Sequence[str] = STAGE_NAMES,
        frozen_stages: int = 0,
        drop_path_rate: float = 0.2,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if not out_features or not set(out_features) <= set(STAGE_NAMES):
            raise ValueError(
                f"DaViT out_features must be a non-empty subset of {STAGE_NAMES}, got {list(out_features)}"
            )
        self.extractor = DaViTFeatureExtractor(
            vision_config_from(config),
            out_indices=[STAGE_NAMES.index(name) for name in out_features],
            frozen_stages=frozen_stages,
            drop_path_rate=drop_path_rate,
            gradient_checkpointing=gradient_checkpointing,
        )
        if weights:
            load_davit_weights(self.extractor, weights)
        self._out_features = [STAGE_NAMES[i] for i in self.extractor.out_indices]
        info = self.extractor.feature_info
        self._out_feature_channels = {n: f.channels for n, f in zip(self._out_features, info)}
        self._out_feature_strides = {n: f.stride for n, f in zip(self._out_features, info)}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self._out_features, self.extractor(images)))

    @property
    def size_divisibility(self) -> int:
        """detectron2 pads batches to this, so the extractor never has to pad (and warn) again."""
        return SIZE_DIVISOR

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_davit_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> DaViT:
    """The bare DaViT from `MODEL.DAVIT` (see `add_florence2_config`)."""
    if input_shape.channels != 3:
        raise ValueError(f"DaViT takes 3-channel images, the config gives {input_shape.channels}")
    davit = cfg.MODEL.DAVIT
    return DaViT(
        config=davit.CONFIG,
        weights=davit.WEIGHTS,
        out_features=davit.OUT_FEATURES,
        frozen_stages=davit.FROZEN_STAGES,
        drop_path_rate=davit.DROP_PATH_RATE,
        gradient_checkpointing=davit.GRADIENT_CHECKPOINTING,
    )


@BACKBONE_REGISTRY.register()
def build_davit_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """DaViT + FPN (P2..P6, with max-pooled P6), the backbone Mask R-CNN FPN configs expect."""
    return FPN(
        bottom_up=build_davit_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
