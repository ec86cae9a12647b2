"""The registered DaViT backbones: detectron2's contract (names, shapes, strides, divisibility),
pretrained weights copied in, and FPN levels on top."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("detectron2", reason="detectron2 is not installed (build it from source: backbones/README.md)")

pytestmark = pytest.mark.detectron2

from d2_setup import small_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone  # noqa: E402
from f2tune_detectron2 import DaViT  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402


def test_registered_builders() -> None:
    assert "build_davit_backbone" in BACKBONE_REGISTRY and "build_davit_fpn_backbone" in BACKBONE_REGISTRY


def test_stage_maps_follow_the_backbone_contract(tiny_dir: Path) -> None:
    backbone = DaViT(config=str(tiny_dir), weights=str(tiny_dir), out_features=["res3", "res5"]).eval()
    shapes = backbone.output_shape()
    assert list(shapes) == ["res3", "res5"]
    assert [(s.channels, s.stride) for s in shapes.values()] == [(32, 8), (64, 32)]
    assert backbone.size_divisibility == 32
    maps = backbone(torch.randn(1, 3, 64, 96))
    assert {name: tuple(m.shape) for name, m in maps.items()} == {"res3": (1, 32, 8, 12), "res5": (1, 64, 2, 3)}


def test_weights_are_the_checkpoints_vision_tower(tiny_dir: Path) -> None:
    tower = AutoModelForImageTextToText.from_pretrained(tiny_dir).model.vision_tower.state_dict()
    loaded = DaViT(config=str(tiny_dir), weights=str(tiny_dir)).extractor.davit.state_dict()
    assert loaded.keys() == tower.keys()
    assert all(torch.equal(loaded[k], tower[k]) for k in tower)


def test_random_init_without_weights(tiny_dir: Path) -> None:
    tower = AutoModelForImageTextToText.from_pretrained(tiny_dir).model.vision_tower.state_dict()
    random = DaViT(config=str(tiny_dir)).extractor.davit.state_dict()
    assert not torch.equal(random["convs.0.conv.weight"], tower["convs.0.conv.weight"])


def test_unknown_out_feature_is_named(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="res6"):
        DaViT(config=str(tiny_dir), out_features=["res2", "res6"])


def test_fpn_builder_from_config(tiny_dir: Path) -> None:
    cfg = small_cfg(tiny_dir)
    fpn = build_backbone(cfg, ShapeSpec(channels=3))
    assert fpn.size_divisibility == 32
    shapes = fpn.output_shape()
    assert {n: s.stride for n, s in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert {s.channels for s in shapes.values()} == {32}
    maps = fpn(torch.randn(2, 3, 64, 64))
    assert tuple(maps["p2"].shape) == (2, 32, 16, 16) and tuple(maps["p6"].shape) == (2, 32, 1, 1)
