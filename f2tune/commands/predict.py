"""`f2tune predict MODEL IMAGES... [--task T] [--text X | --region x1,y1,x2,y2 | --prompt P]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from f2tune.commands.arguments import at_least
from f2tune.errors import RecipeError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("predict", help="run a model on images; write JSONL and pictures")
    parser.add_argument(
        "model", help="Hub id, exported model or adapter folder, a run folder, or a training checkpoint (.ckpt)"
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    parser.add_argument("--task", help="Florence-2 task token (default <CAPTION>; none with --prompt)")
    parser.add_argument("--text", help="text input of the task (e.g. the phrase to ground)")
    parser.add_argument("--region", help="region input x1,y1,x2,y2 in pixels (REGION_TO_* tasks)")
    parser.add_argument("--prompt", help="a free-text prompt instead of a task token")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("predictions"),
        help="output folder: new, empty, or earlier predictions (replaced whole)",
    )
    parser.add_argument("--batch-size", type=at_least(1), default=4)
    parser.add_argument(
        "--max-new-tokens",
        type=at_least(1),
        help="longest answer in tokens (default: a run's eval.max_new_tokens, for a run or its checkpoint; else the "
        "task's)",
    )
    parser.add_argument(
        "--num-beams",
        type=at_least(1),
        help="beam search width (default: the run's eval.num_beams, else the task's: 3)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="weights' type (bfloat16 halves the memory on a GPU)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.predict.run import PredictRequest, predict

    request = PredictRequest(task=args.task, text=args.text, region=_region(args.region), prompt=args.prompt)
    predict(
        args.model,
        args.images,
        request,
        args.out,
        args.batch_size,
        args.dtype,
        args.device,
        args.max_new_tokens,
        args.num_beams,
    )
    return 0


def _region(text: str | None) -> list[float] | None:
    if text is None:
        return None
    region = []  # its count and finiteness are checked with the task (PredictRequest)
    for value in text.split(","):
        try:
            region.append(float(value))
        except ValueError:
            raise RecipeError(f"--region {text}: {value!r} is not a number; give x1,y1,x2,y2 in pixels") from None
    return region
