"""`f2tune bench [--sizes tiny,base] [--modes full,lora,frozen,generate,load] ...`: the training-step benchmark
(with validation generation and data loading)."""

from __future__ import annotations

import argparse

from f2tune.bench.options import add_arguments


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench",
        help="time f2tune's training step against a plain transformers + peft loop",
        description="Time f2tune's training step against a plain transformers + peft loop on the same batches "
        "(benchmarks/README.md has the results).",
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.bench.main import run as bench

    return bench(args)
