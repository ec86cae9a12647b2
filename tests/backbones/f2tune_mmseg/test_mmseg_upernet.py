"""The shipped UperNet ADE20K config: the paper's protocol as configured, and (shrunk to the tiny
DaViT) a model that builds and takes a training step on a generated batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("mmseg", reason="mmsegmentation is not installed (backbones/mmseg/install_env.sh)")

pytestmark = pytest.mark.mmseg

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402
from mmseg_setup import UPERNET_CONFIG, small_config  # noqa: E402

register_all_modules()


def test_config_follows_the_protocol() -> None:
    cfg = Config.fromfile(str(UPERNET_CONFIG))
    assert cfg.custom_imports.imports == ["f2tune_mmseg"]
    assert cfg.model.backbone.type == "Florence2DaViT"
    assert cfg.model.decode_head.type == "UPerHead" and cfg.model.decode_head.num_classes == 150
    assert cfg.model.decode_head.in_channels == [128, 256, 512, 1024]
    assert cfg.crop_size == (512, 512) and cfg.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size * 8 == 64  # per GPU, on the 8 GPUs of the launch line
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.optimizer.type == "AdamW"


def _batch() -> dict:
    inputs, samples = [], []
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8, generator=generator))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64), generator=generator))
        sample.set_metainfo({"img_shape": (64, 64), "ori_shape": (64, 64), "pad_shape": (64, 64)})
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


def test_upernet_builds_and_trains_a_step(tiny_dir: Path) -> None:
    torch.manual_seed(0)
    cfg = small_config(tiny_dir)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=cfg.optim_wrapper.optimizer))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    losses = model.train_step(_batch(), optim)
    assert {"decode.loss_ce", "aux.loss_ce"} <= losses.keys()
    assert all(torch.isfinite(v) for v in losses.values())
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert any(k.startswith("backbone.extractor.davit.blocks.0") for k in changed)
    assert any(k.startswith("decode_head") for k in changed)
