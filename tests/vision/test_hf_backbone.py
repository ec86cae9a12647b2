"""The registered backbone: AutoBackbone builds it, UperNet trains on it, registering twice is fine."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from transformers import AutoBackbone, AutoConfig, UperNetConfig, UperNetForSemanticSegmentation

import f2tune.vision.hf_backbone as hf_backbone
from f2tune.vision.hf_backbone import MODEL_TYPE, Florence2DaViTBackbone, Florence2DaViTBackboneConfig

TINY = {"embed_dim": [16, 32, 48, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 2, 3, 4], "num_groups": [1, 2, 3, 4]}


def _config(**kwargs) -> Florence2DaViTBackboneConfig:
    return Florence2DaViTBackboneConfig(**TINY, window_size=4, **kwargs)


def test_auto_classes_and_idempotent_registration(tmp_path: Path) -> None:
    importlib.reload(hf_backbone)
    config = _config(out_indices=[1, 3], frozen_stages=1)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.model_type == MODEL_TYPE and loaded.out_features == ["stage2", "stage4"]
    backbone = AutoBackbone.from_config(loaded)
    assert type(backbone).__name__ == Florence2DaViTBackbone.__name__
    assert backbone.channels == [32, 64] and backbone.extractor.frozen_stages == 1
    maps = backbone(torch.randn(1, 3, 64, 64)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(1, 32, 8, 8), (1, 64, 2, 2)]


def test_upernet_trains_three_steps() -> None:
    torch.manual_seed(0)
    config = UperNetConfig(
        backbone_config=_config(frozen_stages=1),
        num_labels=3,
        hidden_size=32,
        auxiliary_in_channels=48,
        auxiliary_channels=16,
    )
    model = UperNetForSemanticSegmentation(config).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    images, masks = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    for _ in range(3):
        loss = model(pixel_values=images, labels=masks).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("backbone.extractor.davit.blocks.3") for k in changed)
    assert any(k.startswith("decode_head") for k in changed)
    assert not any(k.startswith("backbone.extractor.davit.convs.0") for k in changed)
