"""AdamW parameter groups: the backbone multiplier and layer decay reach exactly the DaViT parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("detectron2", reason="detectron2 is not installed (build it from source: backbones/README.md)")

pytestmark = pytest.mark.detectron2

from d2_setup import small_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from f2tune_detectron2 import build_davit_optimizer, davit_lr_factor  # noqa: E402

BASE = (1, 1, 9, 1)
DAVIT = "backbone.bottom_up.extractor.davit"


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        (f"{DAVIT}.convs.0.conv.weight", 1),
        (f"{DAVIT}.blocks.0.0.spatial_block.norm1.weight", 1),
        (f"{DAVIT}.convs.2.norm.bias", 3),
        (f"{DAVIT}.blocks.2.8.spatial_block.conv1.weight", 11),
        (f"{DAVIT}.blocks.3.0.spatial_block.window_attn.qkv.weight", 12),
    ],
)
def test_layer_decay_counts_blocks_in_order(name: str, layer: int) -> None:
    assert davit_lr_factor(name, BASE, backbone_multiplier=0.5, layer_decay=0.9) == pytest.approx(
        0.5 * 0.9 ** (12 - layer)
    )


def test_heads_keep_the_base_rate() -> None:
    assert davit_lr_factor("roi_heads.box_predictor.cls_score.weight", BASE, 0.1, 0.5) == 1.0
    assert davit_lr_factor("backbone.fpn_lateral2.weight", BASE, 0.1, 0.5) == 1.0


def test_optimizer_groups(tiny_dir: Path) -> None:
    cfg = small_cfg(tiny_dir).clone()
    cfg.defrost()
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    model = build_model(cfg)
    optimizer = build_davit_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    base_lr = cfg.SOLVER.BASE_LR
    assert group_of[id(params[f"{DAVIT}.convs.0.conv.weight"])]["lr"] == pytest.approx(0.1 * base_lr)
    assert group_of[id(params["roi_heads.box_predictor.cls_score.weight"])]["lr"] == pytest.approx(base_lr)
    assert group_of[id(params[f"{DAVIT}.convs.0.norm.weight"])]["weight_decay"] == 0.0
    assert group_of[id(params[f"{DAVIT}.convs.0.conv.weight"])]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY


def test_unknown_optimizer_is_refused(tiny_dir: Path) -> None:
    cfg = small_cfg(tiny_dir).clone()
    cfg.defrost()
    cfg.SOLVER.OPTIMIZER = "LION"
    with pytest.raises(ValueError, match="ADAMW or SGD"):
        build_davit_optimizer(cfg, build_model(cfg))
