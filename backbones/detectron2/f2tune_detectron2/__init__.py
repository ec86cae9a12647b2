"""Florence-2's DaViT encoder as a detectron2 backbone.

Importing this package registers `build_davit_backbone` and `build_davit_fpn_backbone` in
detectron2's BACKBONE_REGISTRY, so a config selects them with `MODEL.BACKBONE.NAME`.
"""

from f2tune_detectron2.backbone import DaViT, build_davit_backbone, build_davit_fpn_backbone
from f2tune_detectron2.config import add_florence2_config
from f2tune_detectron2.optim import build_davit_optimizer, davit_lr_factor

__all__ = [
    "DaViT",
    "add_florence2_config",
    "build_davit_backbone",
    "build_davit_fpn_backbone",
    "build_davit_optimizer",
    "davit_lr_factor",
]
