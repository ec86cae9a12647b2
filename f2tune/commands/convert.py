"""`f2tune convert SRC --out DIR [--base NATIVE_MODEL]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert a remote-code Florence-2 checkpoint or LoRA adapter to the native layout",
        description=(
            "Rewrite a checkpoint of the original remote-code Florence-2 (microsoft/Florence-2-*), or a peft "
            "adapter trained on one, into the native transformers layout."
        ),
    )
    parser.add_argument("source", type=Path, help="model folder, .safetensors/.bin file, or peft adapter folder")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: new, empty, or an earlier convert output (replaced whole)",
    )
    parser.add_argument(
        "--base",
        help="native model (Hub id or folder) of the same size: gives config and processor, and the adapter's base. "
        "Default: florence-community/Florence-2-<size> named after the source's base",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.convert.checkpoint import convert

    convert(args.source, args.out, base=args.base)
    return 0
