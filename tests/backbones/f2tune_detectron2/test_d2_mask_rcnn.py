"""Mask R-CNN on the DaViT: the shipped yacs and LazyConfig configs build, train a step, and infer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("detectron2", reason="detectron2 is not installed (build it from source: backbones/README.md)")

pytestmark = pytest.mark.detectron2

from d2_setup import LAZY_CONFIG, small_cfg  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from f2tune_detectron2 import build_davit_optimizer  # noqa: E402

from f2tune.testing.dense import write_coco_instances  # noqa: E402


def _batch(cfg, folder: Path, name: str) -> list[dict]:
    """Two mapped training samples of a generated COCO dataset, as detectron2's loader gives them."""
    register_coco_instances(name, {}, str(write_coco_instances(folder, 2)), str(folder / "images"))
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(record) for record in DatasetCatalog.get(name)]


def test_yacs_mask_rcnn_trains_a_step_and_infers(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = small_cfg(tiny_dir)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_davit_optimizer(cfg, model)
    batch = _batch(cfg, tmp_path, "f2tune_test_yacs_step")
    assert batch[0]["image"].shape[-2:] == (64, 64) and batch[0]["instances"].has("gt_masks")
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.train()
    with EventStorage(0):  # detectron2's training forward logs into one
        losses = model(batch)
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= losses.keys()
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert any(k.startswith("backbone.bottom_up.extractor.davit.blocks.0") for k in changed)
    assert any(k.startswith("roi_heads.mask_head") for k in changed)

    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": batch[0]["image"], "height": 64, "width": 64}])
    instances = output["instances"]
    assert instances.image_size == (64, 64)
    assert {"pred_boxes", "scores", "pred_classes", "pred_masks"} <= set(instances.get_fields())


def test_lazy_config_builds_and_infers(tiny_dir: Path) -> None:
    cfg = LazyConfig.load(str(LAZY_CONFIG))
    cfg.model.backbone.bottom_up.config = str(tiny_dir)
    cfg.model.backbone.bottom_up.weights = str(tiny_dir)
    cfg.model.roi_heads.num_classes = 3
    assert cfg.train.amp.enabled and cfg.model.input_format == "RGB"
    model = instantiate(cfg.model).eval()
    assert model.backbone.size_divisibility == 32
    with torch.no_grad():
        (output,) = model([{"image": torch.randint(0, 255, (3, 80, 96)).float(), "height": 80, "width": 96}])
    assert output["instances"].image_size == (80, 96)
