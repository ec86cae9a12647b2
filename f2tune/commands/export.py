"""`f2tune export RUN_OR_CKPT --out DIR [--kind adapter|merged] [--checkpoint best|last]`."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    parser.add_argument("--checkpoint", default="best", help="for a run folder: best (default) or last")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.export.checkpoint import export_checkpoint

    export_checkpoint(args.source, args.out, kind=args.kind, which=args.checkpoint)
    return 0
