"""`f2tune check-data RECIPE [key.path=value ...]`: every problem of the recipe's data at once."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from f2tune.commands.arguments import at_least
from f2tune.errors import RecipeError

PICTURES_PER_TASK = 8
"""Samples drawn per split and task where `--pictures-per-task` is not given."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check-data",
        help="read every record and image of data.train/val/test; report all problems and target lengths",
        description="Read every record of every split once, open every image, report every problem "
        "(file:line, kind, counts by kind; prompts too long for the model's encoder among them) and "
        "target token lengths; exit 1 if anything is wrong.",
    )
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value")
    parser.add_argument(
        "--pictures",
        metavar="DIR",
        help="draw the first samples of each split's tasks into DIR, answers on their images, as training "
        "reads them: a wrong box_format or image_root shows at a glance (a new folder, or one check-data "
        "drew into before: replaced whole)",
    )
    parser.add_argument(
        "--pictures-per-task", type=at_least(1), metavar="N", help=f"with --pictures ({PICTURES_PER_TASK})"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    per_task = PICTURES_PER_TASK if args.pictures_per_task is None else args.pictures_per_task
    if args.pictures is None and args.pictures_per_task is not None:
        raise RecipeError("--pictures-per-task needs --pictures DIR, the folder to draw the samples into")
    from f2tune.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from f2tune.data.check import check_data
    from f2tune.data.check_pictures import SamplePictures
    from f2tune.data.transforms import build_augmentation
    from f2tune.export.atomic import atomic_folder
    from f2tune.model.loading import load_processor, text_positions

    # Entered before the data is read, so that a file or a folder of the user's own files is refused
    # at once, as `--out` is; an earlier check's pictures are replaced whole, none left over.
    drawing = nullcontext(None) if args.pictures is None else atomic_folder(Path(args.pictures), "check-data")
    with drawing as folder:
        pictures = None
        if folder is not None:
            augmentation = build_augmentation(recipe.data.augment, seed=recipe.trainer.seed)
            pictures = SamplePictures(folder, per_task, augmentation)
        report = check_data(recipe.data, load_processor(recipe.model), text_positions(recipe.model), pictures)
    print(report.render())
    if pictures is not None:
        print(f"pictures: {len(pictures.written)} in {args.pictures}")
    return 1 if report.problems else 0
