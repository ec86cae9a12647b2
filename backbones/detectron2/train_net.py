#!/usr/bin/env python
"""Train or evaluate a detectron2 detector on Florence-2's DaViT encoder, from a yacs `.yaml` or a
LazyConfig `.py` config; multi-GPU and multi-node through detectron2's `launch`, AMP as the config says.

    python backbones/detectron2/train_net.py --config-file CONFIG --num-gpus 8 [--resume] [--eval-only] \
        [--register-coco NAME JSON IMAGE_DIR ...] [overrides: KEY VALUE for yacs, key=value for LazyConfig]

`--register-coco` registers your own COCO-format dataset under NAME (then DATASETS.TRAIN "('NAME',)",
or dataloader.train.dataset.names=NAME); COCO 2017 itself is built in (`coco_2017_train` / `_val`).
"""

from __future__ import annotations

import argparse
import os

import detectron2.utils.comm as comm
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from f2tune_detectron2 import add_florence2_config, build_davit_optimizer


class Trainer(DefaultTrainer):
    """detectron2's trainer with AdamW + DaViT learning rates, COCO evaluation and AMP precision."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        if isinstance(self._trainer, AMPTrainer):
            self._trainer.precision = getattr(torch, cfg.SOLVER.AMP.PRECISION)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_davit_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> COCOEvaluator:
        return COCOEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))


def run_yacs(args: argparse.Namespace) -> dict:
    cfg = get_cfg()
    add_florence2_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def evaluate_lazy(cfg, model: torch.nn.Module) -> dict:
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def run_lazy(args: argparse.Namespace) -> dict | None:
    """The LazyConfig loop: what detectron2's own lazy training tool does, with AMP precision."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    model = instantiate(cfg.model).to(cfg.train.device)
    if args.eval_only:
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return evaluate_lazy(cfg, model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    model = create_ddp_model(model, **cfg.train.ddp)
    loader = instantiate(cfg.dataloader.train)
    if cfg.train.amp.enabled:
        precision = getattr(torch, cfg.train.amp.get("precision", "float16"))
        trainer = AMPTrainer(model, loader, optimizer, precision=precision)
    else:
        trainer = SimpleTrainer(model, loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: evaluate_lazy(cfg, model)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), cfg.train.log_period)
            if main
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return None


def main(args: argparse.Namespace) -> dict | None:
    for name, json_file, image_dir in args.register_coco or []:
        register_coco_instances(name, {}, json_file, image_dir)
    return run_lazy(args) if args.config_file.endswith(".py") else run_yacs(args)


def parser() -> argparse.ArgumentParser:
    result = default_argument_parser()
    result.add_argument(
        "--register-coco", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format instances file as dataset NAME (repeatable)",
    )  # fmt: skip
    return result


if __name__ == "__main__":
    args = parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
