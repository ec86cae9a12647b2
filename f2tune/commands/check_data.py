"""`f2tune check-data RECIPE [key.path=value ...]`: every problem of the recipe's data at once."""

from __future__ import annotations

import argparse
from pathlib import Path


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
        "reads them: a wrong box_format or image_root shows at a glance",
    )
    parser.add_argument("--pictures-per-task", type=int, default=8, metavar="N", help="with --pictures (8)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from f2tune.data.check import check_data
    from f2tune.data.check_pictures import SamplePictures
    from f2tune.data.transforms import build_augmentation
    from f2tune.model.loading import load_processor, text_positions

    pictures = None
    if args.pictures:
        augmentation = build_augmentation(recipe.data.augment, seed=recipe.trainer.seed)
        pictures = SamplePictures(Path(args.pictures), args.pictures_per_task, augmentation)
    report = check_data(recipe.data, load_processor(recipe.model), text_positions(recipe.model), pictures)
    print(report.render())
    if pictures is not None:
        print(f"pictures: {len(pictures.written)} in {args.pictures}")
    return 1 if report.problems else 0
