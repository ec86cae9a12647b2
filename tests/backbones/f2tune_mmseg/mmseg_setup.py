"""The shipped UperNet config shrunk for CPU tests: tiny DaViT, narrow heads, BN instead of SyncBN
(importable as `mmseg_setup`: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[3]
UPERNET_CONFIG = REPO / "backbones/mmseg/configs/upernet_davit_b_ade20k_512x512_40k.py"
TINY_CHANNELS = [16, 32, 48, 64]  # embed_dim of f2tune.testing.tiny's DaViT


def small_config(tiny_dir: Path) -> Config:
    cfg = Config.fromfile(str(UPERNET_CONFIG))
    norm = dict(type="BN", requires_grad=True)
    cfg.merge_from_dict(
        {
            "model.backbone.config": str(tiny_dir),
            "model.backbone.weights": str(tiny_dir),
            "model.data_preprocessor.size": (64, 64),
            "model.decode_head.in_channels": TINY_CHANNELS,
            "model.decode_head.channels": 16,
            "model.decode_head.norm_cfg": norm,
            "model.auxiliary_head.in_channels": TINY_CHANNELS[2],
            "model.auxiliary_head.channels": 16,
            "model.auxiliary_head.norm_cfg": norm,
        }
    )
    return cfg
