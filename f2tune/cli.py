"""Command line: `f2tune fit|validate|test RECIPE [key.path=value ...]` and `f2tune predict MODEL IMAGES`.

Only argument parsing and error printing live here; the work is in `f2tune.train.run`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from f2tune.errors import F2TuneError
from f2tune.log import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f2tune", description="Fine-tune Florence-2 from a YAML recipe.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit", help="train as a recipe says, then export", description="Train as a recipe says, then export."
    )
    fit.add_argument("recipe", help="recipe YAML file (see recipes/)")
    fit.add_argument(
        "overrides",
        nargs="*",
        metavar="key.path=value",
        help="change recipe values, e.g. trainer.max_steps=10 lora.r=8",
    )
    fit.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    fit.add_argument("--print-config", action="store_true", help="print the effective recipe and exit")
    for stage, split in (("validate", "data.val"), ("test", "data.test")):
        command = commands.add_parser(stage, help=f"task metrics of a run's checkpoint on {split}")
        command.add_argument("recipe", help="the recipe the run was trained with")
        command.add_argument("overrides", nargs="*", metavar="key.path=value")
        command.add_argument(
            "--checkpoint", default="best", help="best (default), last, none (untrained weights), or a .ckpt path"
        )
    predict = commands.add_parser("predict", help="run a model on images; write JSONL and pictures")
    predict.add_argument("model", help="Hub id, exported model or adapter folder, or a run folder")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--task", default="<CAPTION>", help="Florence-2 task token (default <CAPTION>)")
    predict.add_argument("--text", help="text input of the task (e.g. the phrase to ground)")
    predict.add_argument("--region", help="region input x1,y1,x2,y2 in pixels (REGION_TO_* tasks)")
    predict.add_argument("--prompt", help="a free-text prompt instead of a task token")
    predict.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (replaced)")
    predict.add_argument("--batch-size", type=int, default=4)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after flags (`fit r.yaml --resume a.b=1`): argparse leaves those unparsed.
    args, rest = parser.parse_known_args(argv)
    unknown_flags = [item for item in rest if item.startswith("-")]
    if unknown_flags or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown_flags or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    setup_logging()
    # Raised inside Lightning against newer torch releases; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    try:
        return _run(args)
    except F2TuneError as err:
        print(f"f2tune: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "predict":
        return _predict(args)
    from f2tune.recipe import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if getattr(args, "print_config", False):
        print(dump_recipe(recipe), end="")
        return 0
    # heavy imports only once the recipe is known to be valid
    if args.command == "fit":
        from f2tune.train.run import fit

        fit(recipe, resume=args.resume)
    else:
        from f2tune.train.evaluate import evaluate

        evaluate(recipe, args.command, args.checkpoint)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from f2tune.errors import RecipeError
    from f2tune.predict.run import PredictRequest, predict

    region = None
    if args.region:
        try:
            region = [float(v) for v in args.region.split(",")]
        except ValueError:
            region = []
        if len(region) != 4:
            raise RecipeError(f"--region: expected x1,y1,x2,y2 in pixels, got {args.region!r}")
    request = PredictRequest(task=args.task, text=args.text, region=region, prompt=args.prompt)
    predict(args.model, args.images, request, args.out, batch_size=args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
