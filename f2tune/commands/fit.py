"""`f2tune fit RECIPE [key.path=value ...] [--resume | --auto-resume] [--print-config]`."""

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
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue the run from its last checkpoint, with the recipe given now (its length, data and "
        "optimizer settings may change; the model and adaptation may not)",
    )
    resume.add_argument(
        "--auto-resume",
        action="store_true",
        help="--resume when the run has a last checkpoint, else start it: one command for a job that a "
        "scheduler may stop and start again",
    )
    parser.add_argument("--print-config", action="store_true", help="print the effective recipe and exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.recipe import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_config:
        print(dump_recipe(recipe), end="")
        return 0
    from f2tune.train.locate import last_checkpoint  # heavy imports only once the recipe is known to be valid
    from f2tune.train.run import fit
    from f2tune.train.setup import run_dir_of

    resume = args.resume or (args.auto_resume and last_checkpoint(run_dir_of(recipe)).is_file())
    fit(recipe, resume=resume, resumes_on_restart=args.auto_resume or args.resume)
    return 0
