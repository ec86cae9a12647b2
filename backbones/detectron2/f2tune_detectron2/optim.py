"""AdamW for DaViT detectors: a backbone learning-rate multiplier and layer-wise decay.

Pretrained transformer encoders fine-tune best with AdamW, no weight decay on norms, and smaller
steps for their early layers; detectron2's default builder is SGD with one rate for everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from detectron2.config import CfgNode
from detectron2.solver import get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping
from torch import nn

from f2tune_detectron2.backbone import DaViT

_DAVIT_PARAM = re.compile(r"(?:^|\.)extractor\.davit\.(convs|blocks)\.(\d+)(?:\.(\d+))?\.")


def davit_lr_factor(name: str, depths: Sequence[int], backbone_multiplier: float, layer_decay: float) -> float:
    """Learning-rate factor of parameter `name`: 1 outside the DaViT; inside it,
    `backbone_multiplier * layer_decay ** (L - layer)` where stage i's patch embedding shares the layer of
    its first block, blocks count 1..L in order, so the last block learns at the full backbone rate."""
    match = _DAVIT_PARAM.search(name)
    if match is None:
        return 1.0
    kind, stage, block = match.group(1), int(match.group(2)), match.group(3)
    first_of_stage = sum(depths[:stage]) + 1
    layer = first_of_stage if kind == "convs" else first_of_stage + int(block)
    return backbone_multiplier * layer_decay ** (sum(depths) - layer)


def build_davit_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """`SOLVER.OPTIMIZER` ("ADAMW" or "SGD") over detectron2's parameter groups, norms without weight
    decay, DaViT rates from `davit_lr_factor`, gradient clipping as `SOLVER.CLIP_GRADIENTS` says."""
    davits = [m for m in model.modules() if isinstance(m, DaViT)]
    if len(davits) != 1:
        raise ValueError(f"expected one DaViT backbone in the model, found {len(davits)}")
    depths = list(davits[0].extractor.config.depths)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        lr_factor_func=lambda name: davit_lr_factor(
            name, depths, cfg.SOLVER.BACKBONE_MULTIPLIER, cfg.SOLVER.LAYER_DECAY
        ),
    )
    kind = cfg.SOLVER.OPTIMIZER.upper()
    if kind == "ADAMW":
        optimizer_type, options = torch.optim.AdamW, {"betas": (0.9, 0.999)}
    elif kind == "SGD":
        optimizer_type, options = torch.optim.SGD, {"momentum": cfg.SOLVER.MOMENTUM, "nesterov": cfg.SOLVER.NESTEROV}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
    return maybe_add_gradient_clipping(cfg, optimizer_type)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, **options
    )
