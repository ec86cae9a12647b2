"""Command line: `f2tune fit RECIPE [key.path=value ...] [--resume] [--print-config]`.

Only argument parsing and error printing live here; the work is in `f2tune.train.run`.
"""

from __future__ import annotations

import argparse
import sys
import warnings

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after flags (`fit r.yaml --resume a.b=1`): argparse leaves those unparsed.
    args, rest = parser.parse_known_args(argv)
    unknown_flags = [item for item in rest if item.startswith("-")]
    if unknown_flags or (rest and args.command != "fit"):
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
    from f2tune.recipe import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_config:
        print(dump_recipe(recipe), end="")
        return 0
    from f2tune.train.run import fit  # heavy imports only once the recipe is known to be valid

    fit(recipe, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
