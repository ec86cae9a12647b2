"""`f2tune validate|test RECIPE [key.path=value ...] [--checkpoint best|last|none|PATH]`."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    for stage, split in (("validate", "data.val"), ("test", "data.test")):
        parser = commands.add_parser(stage, help=f"task metrics of a run's checkpoint on {split}")
        parser.add_argument("recipe", help="the recipe the run was trained with")
        parser.add_argument("overrides", nargs="*", metavar="key.path=value")
        parser.add_argument(
            "--checkpoint",
            default="best",
            help="best (default: the best by trainer.monitor; the run's last.ckpt when it kept none, as the log "
            "says), last, none (untrained weights), or a .ckpt path",
        )
        parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from f2tune.train.evaluate import evaluate

    evaluate(recipe, args.command, args.checkpoint)
    return 0
