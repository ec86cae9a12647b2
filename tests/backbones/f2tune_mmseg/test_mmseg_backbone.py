"""The registered mmseg backbone: built from a config dict, maps at strides 4..32 for any input size,
pretrained weights copied in `init_weights()` as mmengine's Runner expects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("mmseg", reason="mmsegmentation is not installed (backbones/mmseg/install_env.sh)")

pytestmark = pytest.mark.mmseg

import f2tune_mmseg  # noqa: E402,F401  (registers Florence2DaViT)
from mmseg.registry import MODELS  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402


def test_maps_at_any_input_size(tiny_dir: Path) -> None:
    backbone = MODELS.build(dict(type="Florence2DaViT", config=str(tiny_dir), out_indices=(0, 1, 2, 3))).eval()
    assert backbone.channels == [16, 32, 48, 64]
    maps = backbone(torch.randn(2, 3, 70, 50))
    assert isinstance(maps, tuple)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 18, 13), (2, 32, 9, 7), (2, 48, 5, 4), (2, 64, 3, 2)]


def test_init_weights_loads_the_vision_tower(tiny_dir: Path) -> None:
    backbone = MODELS.build(dict(type="Florence2DaViT", config=str(tiny_dir), weights=str(tiny_dir)))
    tower = AutoModelForImageTextToText.from_pretrained(tiny_dir).model.vision_tower.state_dict()
    assert not torch.equal(backbone.extractor.davit.state_dict()["convs.0.conv.weight"], tower["convs.0.conv.weight"])
    backbone.init_weights()
    loaded = backbone.extractor.davit.state_dict()
    assert all(torch.equal(loaded[k], tower[k]) for k in tower)


def test_init_cfg_with_weights_is_refused(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="init_cfg"):
        MODELS.build(
            dict(type="Florence2DaViT", config=str(tiny_dir), weights=str(tiny_dir), init_cfg=dict(type="Pretrained"))
        )
