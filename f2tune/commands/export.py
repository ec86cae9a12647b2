"""`f2tune export RUN_OR_CKPT --out DIR [--kind adapter|merged] [--checkpoint best|last]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from f2tune.errors import RunError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a checkpoint as a peft adapter or a model folder (with model card)",
        description="Write any checkpoint of a run as a peft adapter or a merged model folder, atomically.",
    )
    parser.add_argument("source", help="a run folder (its best or last checkpoint) or a .ckpt file")
    parser.add_argument(
        "--out", type=Path, required=True, help="export folder: new, empty, or an earlier export (replaced whole)"
    )
    parser.add_argument(
        "--kind",
        choices=("adapter", "merged"),
        help="adapter: peft folder (LoRA runs only); merged: model + processor folder. Default: as the run's export",
    )
    parser.add_argument("--checkpoint", choices=("best", "last"), help="for a run folder: best (default) or last")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.export.checkpoint import export_checkpoint

    if args.checkpoint and Path(args.source).is_file():
        raise RunError(
            f"--checkpoint {args.checkpoint} picks among a run folder's checkpoints, but {args.source} is one "
            "checkpoint file: drop --checkpoint, or give the run folder"
        )
    export_checkpoint(args.source, args.out, kind=args.kind, which=args.checkpoint or "best")
    return 0
