"""A Mask R-CNN config small enough for CPU tests: the shipped yacs config on the tiny Florence-2
(importable as `d2_setup`: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
YACS_CONFIG = REPO / "backbones/detectron2/configs/mask_rcnn_davit_b_fpn_1x_coco.yaml"
LAZY_CONFIG = REPO / "backbones/detectron2/configs/mask_rcnn_davit_b_fpn_1x_coco.py"
TRAIN_NET = REPO / "backbones/detectron2/train_net.py"


def small_overrides(tiny_dir: Path) -> list[str]:
    """yacs overrides: tiny DaViT from `tiny_dir`, 3 shape classes, narrow heads, 64-pixel images, CPU."""
    return [
        "MODEL.DAVIT.CONFIG", str(tiny_dir), "MODEL.DAVIT.WEIGHTS", str(tiny_dir), "MODEL.DEVICE", "cpu",
        "MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128", "SOLVER.AMP.ENABLED", "False",
        "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
    ]  # fmt: skip


def small_cfg(tiny_dir: Path):
    """The shipped yacs config with `small_overrides`, frozen."""
    from detectron2.config import get_cfg
    from f2tune_detectron2 import add_florence2_config

    cfg = get_cfg()
    add_florence2_config(cfg)
    cfg.merge_from_file(str(YACS_CONFIG))
    cfg.merge_from_list(small_overrides(tiny_dir))
    cfg.freeze()
    return cfg
