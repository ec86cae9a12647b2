"""`add_florence2_config(cfg)`: the yacs keys of the DaViT backbone and its optimizer."""

from __future__ import annotations

from detectron2.config import CfgNode as CN


def add_florence2_config(cfg: CN) -> None:
    """Add `MODEL.DAVIT.*` and the optimizer keys; call it before `merge_from_file`."""
    cfg.MODEL.DAVIT = CN()
    # "base" / "large" (random init), or a Florence-2 checkpoint: Hub id, folder, f2tune full or LoRA
    # export. The extractor's shape is read from it, so configs only name the weights.
    cfg.MODEL.DAVIT.CONFIG = "base"
    # Where the encoder weights come from (same kinds of source as CONFIG); "" keeps random weights.
    # Unlike MODEL.WEIGHTS (a whole detector, loaded after building), these fill only the backbone.
    cfg.MODEL.DAVIT.WEIGHTS = ""
    cfg.MODEL.DAVIT.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.DAVIT.FROZEN_STAGES = 0
    cfg.MODEL.DAVIT.DROP_PATH_RATE = 0.2
    cfg.MODEL.DAVIT.GRADIENT_CHECKPOINTING = False

    cfg.SOLVER.OPTIMIZER = "ADAMW"  # or "SGD" (detectron2's default optimizer)
    cfg.SOLVER.BACKBONE_MULTIPLIER = 1.0  # learning rate of the DaViT relative to the heads
    cfg.SOLVER.LAYER_DECAY = 1.0  # < 1: earlier DaViT blocks learn slower (x decay per block)
    cfg.SOLVER.AMP.PRECISION = "float16"  # "bfloat16" on GPUs that have it (no loss scaling needed)
