"""Dense-prediction training step: Florence-2's DaViT-B against ResNet-50 in the same framework, one run.

    python benchmarks/backbone_step.py detectron2                # Mask R-CNN FPN, 1333x800, batch 1
    .venv-mmseg/bin/python benchmarks/backbone_step.py mmseg     # UperNet, 512x512, batch 2 (mmseg environment)

Options: --steps N (timed after one warm-up step), --batch-size, --height, --width, --amp (CUDA only:
bf16 autocast). Both models have random weights (speed and memory do not depend on them), take the same
synthetic batch and AdamW; each runs in its own process so peak memory is its own. Results:
backbones/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from f2tune.bench.measure import Timing, describe_machine, in_child, reset_peak_memory, sync, timing_of

BACKBONES = Path(__file__).resolve().parents[1] / "backbones"
DEFAULTS = {"detectron2": (1, 800, 1333), "mmseg": (2, 512, 512)}  # batch, height, width of each protocol


def detectron2_models(device: str, height: int, width: int) -> dict[str, Callable[[], torch.nn.Module]]:
    """Both Mask R-CNNs; the image size comes with each batch (detectron2 pads to 32 itself)."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from f2tune_detectron2 import add_florence2_config

    def davit() -> torch.nn.Module:
        cfg = get_cfg()
        add_florence2_config(cfg)
        cfg.merge_from_file(str(BACKBONES / "detectron2/configs/mask_rcnn_davit_b_fpn_1x_coco.yaml"))
        cfg.merge_from_list(["MODEL.DAVIT.CONFIG", "base", "MODEL.DAVIT.WEIGHTS", "", "MODEL.DEVICE", device])
        return build_model(cfg)

    def resnet50() -> torch.nn.Module:
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
        cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device])
        return build_model(cfg)

    return {"DaViT-B": davit, "ResNet-50": resnet50}


def detectron2_batch(batch: int, height: int, width: int, device: str) -> list[dict]:
    """Images with 8 random boxes each, their masks the boxes' rectangles, 80 COCO classes."""
    from detectron2.structures import BitMasks, Boxes, Instances

    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        corners = torch.rand(8, 2, 2, generator=generator) * torch.tensor([width, height])
        boxes = torch.cat([corners.min(1).values, corners.max(1).values + 16], 1)
        boxes = boxes.clamp(max=torch.tensor([width, height, width, height]) - 1)
        masks = torch.zeros(8, height, width, dtype=torch.bool)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
            mask[y1:y2, x1:x2] = True
        instances = Instances((height, width), gt_boxes=Boxes(boxes), gt_masks=BitMasks(masks))
        instances.gt_classes = torch.randint(0, 80, (8,), generator=generator)
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
        samples.append({"image": image.to(device), "instances": instances.to(device)})
    return samples


def detectron2_loss(model: torch.nn.Module, batch: list[dict]) -> torch.Tensor:
    from detectron2.utils.events import EventStorage

    with EventStorage(0):  # detectron2's training forward logs into one
        return sum(model(batch).values())


def mmseg_models(device: str, height: int, width: int) -> dict[str, Callable[[], torch.nn.Module]]:
    import f2tune_mmseg  # noqa: F401  (registers Florence2DaViT)
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    bn = dict(type="BN", requires_grad=True)  # one process: SyncBN would be BN anyway

    def build(cfg: Config) -> torch.nn.Module:
        cfg.model.data_preprocessor.size = (height, width)
        for head in ("decode_head", "auxiliary_head"):
            cfg.model[head].update(num_classes=150, norm_cfg=bn)
        return MODELS.build(cfg.model).to(device)

    def davit() -> torch.nn.Module:
        cfg = Config.fromfile(str(BACKBONES / "mmseg/configs/upernet_davit_b_ade20k_512x512_40k.py"))
        cfg.model.backbone.update(config="base", weights="")
        return build(cfg)

    def resnet50() -> torch.nn.Module:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "upernet_r50.py"
            path.write_text('_base_ = ["mmseg::_base_/models/upernet_r50.py"]\n')
            cfg = Config.fromfile(str(path))
        cfg.model.backbone.norm_cfg = bn
        cfg.model.pretrained = None
        return build(cfg)

    return {"DaViT-B": davit, "ResNet-50": resnet50}


def mmseg_batch(batch: int, height: int, width: int, device: str) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator))
        sample = SegDataSample(metainfo={"img_shape": (height, width), "ori_shape": (height, width)})
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, height, width), generator=generator))
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


def mmseg_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    data = model.data_preprocessor(batch, True)
    loss, _ = model.parse_losses(model(**data, mode="loss"))
    return loss


FRAMEWORKS = {
    "detectron2": ("Mask R-CNN FPN", detectron2_models, detectron2_batch, detectron2_loss),
    "mmseg": ("UperNet", mmseg_models, mmseg_batch, mmseg_loss),
}


def measure(framework: str, name: str, args: argparse.Namespace, device: torch.device) -> tuple[float, Timing]:
    """Median forward seconds and the step `Timing` (forward + backward + AdamW) of one model; the
    backward column is their difference (exactly the median of the differences for 1 or 2 steps)."""
    _, models, make_batch, loss_of = FRAMEWORKS[framework]
    torch.manual_seed(0)
    model = models(device.type, args.height, args.width)[name]().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = make_batch(args.batch_size, args.height, args.width, device.type)
    autocast = torch.autocast("cuda", torch.bfloat16) if args.amp else contextlib.nullcontext()
    reset_peak_memory(device)
    forward, steps = [], []
    for step in range(args.steps + 1):  # step 0 warms up
        sync(device)
        start = time.perf_counter()
        with autocast:
            loss = loss_of(model, batch)
        sync(device)
        middle = time.perf_counter()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step:
            forward.append(middle - start)
            steps.append(time.perf_counter() - start)
    return sorted(forward)[len(forward) // 2], timing_of(steps, args.batch_size * args.steps, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=sorted(FRAMEWORKS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    args = parser.parse_args(argv)
    batch, height, width = DEFAULTS[args.framework]
    args.batch_size, args.height, args.width = args.batch_size or batch, args.height or height, args.width or width
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.amp and device.type != "cuda":
        parser.error("--amp needs a CUDA device")
    warnings.filterwarnings("ignore")
    head = FRAMEWORKS[args.framework][0]
    print(f"machine: {describe_machine(device)}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{args.framework} {head}, {args.width}x{args.height}, batch {args.batch_size}, {args.steps} timed steps")
    print("| backbone | forward ms | backward + AdamW ms | step ms | images/s | peak MiB | step time vs ResNet-50 |")
    print("|---|---|---|---|---|---|---|")
    results = {
        name: in_child(partial(measure, args.framework, name, args, device), device=device)
        for name in ("ResNet-50", "DaViT-B")
    }
    reference = results["ResNet-50"]
    for name, result in results.items():
        if isinstance(result, str):
            print(f"| {name} | failed: {result} |")
            continue
        forward, timing = result
        ratio = f"{timing.step_s / reference[1].step_s:.2f}x" if not isinstance(reference, str) else "-"
        print(
            f"| {name} | {forward * 1000:.0f} | {(timing.step_s - forward) * 1000:.0f} | {timing.step_s * 1000:.0f} |"
            f" {timing.samples_per_s:.2f} | {timing.peak_mib:.0f} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
