"""backbones/detectron2/train_net.py end to end on a generated COCO folder: yacs and LazyConfig
configs train two iterations on CPU, checkpoint, and evaluate with COCO metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("detectron2", reason="detectron2 is not installed (build it from source: backbones/README.md)")

from d2_setup import LAZY_CONFIG, TRAIN_NET, YACS_CONFIG, small_overrides  # noqa: E402

from f2tune.testing.dense import write_coco_instances  # noqa: E402

pytestmark = [pytest.mark.detectron2, pytest.mark.slow]


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(TRAIN_NET), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _coco(tmp_path: Path) -> list[str]:
    data = tmp_path / "coco"
    return ["--register-coco", "shapes", str(write_coco_instances(data, 4)), str(data / "images")]


def test_yacs_config_trains_and_evaluates(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "yacs"
    log = _run(
        ["--config-file", str(YACS_CONFIG), *_coco(tmp_path), *small_overrides(tiny_dir),
         "DATASETS.TRAIN", "('shapes',)", "DATASETS.TEST", "('shapes',)", "SOLVER.MAX_ITER", "2",
         "SOLVER.WARMUP_ITERS", "1", "TEST.EVAL_PERIOD", "2", "OUTPUT_DIR", str(out)],
        tmp_path,
    )  # fmt: skip
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    assert "Evaluation results for segm" in log
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("loss_mask" in m for m in metrics) and any("segm/AP" in m for m in metrics)


def test_lazy_config_trains_and_evaluates(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lazy"
    log = _run(
        ["--config-file", str(LAZY_CONFIG), *_coco(tmp_path),
         f"model.backbone.bottom_up.config={tiny_dir}", f"model.backbone.bottom_up.weights={tiny_dir}",
         "model.roi_heads.num_classes=3", "train.device=cpu",
         "train.amp.enabled=False", "train.max_iter=2", "train.eval_period=2", f"train.output_dir={out}",
         "dataloader.train.dataset.names=shapes", "dataloader.test.dataset.names=shapes",
         "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
         "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
         "dataloader.train.mapper.augmentations.0.max_size=128",
         "dataloader.test.mapper.augmentations.0.short_edge_length=64",
         "dataloader.test.mapper.augmentations.0.max_size=128"],
        tmp_path,
    )  # fmt: skip
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    assert "Evaluation results for segm" in log
