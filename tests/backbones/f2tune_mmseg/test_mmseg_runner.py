"""mmengine's Runner on the shipped config (shrunk): train, checkpoint and validate mIoU on a generated
ADE20K-format folder, as `tools/train.py` would."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("mmseg", reason="mmsegmentation is not installed (backbones/mmseg/install_env.sh)")

from mmengine.runner import Runner  # noqa: E402
from mmseg_setup import small_config  # noqa: E402

from f2tune.testing.dense import write_ade20k  # noqa: E402

pytestmark = [pytest.mark.mmseg, pytest.mark.slow]


def test_runner_trains_and_reports_miou(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_ade20k(tmp_path / "ade", {"training": 8, "validation": 4})
    cfg = small_config(tiny_dir)
    crop = (64, 64)
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", reduce_zero_label=True),
        dict(type="RandomResize", scale=(128, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
        dict(type="RandomCrop", crop_size=crop, cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackSegInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(128, 64), keep_ratio=True),
        dict(type="LoadAnnotations", reduce_zero_label=True),
        dict(type="PackSegInputs"),
    ]
    cfg.merge_from_dict(
        {
            "work_dir": str(tmp_path / "work"),
            "optim_wrapper.type": "OptimWrapper",  # AMP needs a GPU; the shipped AmpOptimWrapper is checked elsewhere
            "train_cfg.max_iters": 4,
            "train_cfg.val_interval": 4,
            "param_scheduler": [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=4)],
            "default_hooks.checkpoint.interval": 4,
            "default_hooks.logger.interval": 1,
        }
    )
    for loader, pipeline in ((cfg.train_dataloader, train_pipeline), (cfg.val_dataloader, test_pipeline)):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data), pipeline=pipeline)
    cfg.train_dataloader.batch_size = 2
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert (tmp_path / "work" / "iter_4.pth").is_file()
    metrics = runner.val_loop.run()
    assert 0.0 <= metrics["mIoU"] <= 100.0 and math.isfinite(metrics["mIoU"])
