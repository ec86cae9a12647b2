"""`f2tune fit RECIPE [key.path=value ...] [--resume] [--print-config]`."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fit", help="train as a recipe says, then export", description="Train as a recipe says, then export."
    )
    parser.add_argument("recipe", help="recipe YAML file (see recipes/)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.path=value",
        help="change recipe values, e.g. trainer.max_steps=10 lora.r=8",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run from its last checkpoint, with the recipe given now (its length, data and "
        "optimizer settings may change; the model and adaptation may not)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the effective recipe and exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.recipe import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_config:
        print(dump_recipe(recipe), end="")
        return 0
    from f2tune.train.run import fit  # heavy imports only once the recipe is known to be valid

    fit(recipe, resume=args.resume)
    return 0
