"""Command-line options of the benchmark, apart from its heavy imports (the CLI builds every
command's parser at start)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import get_args

from f2tune.commands.arguments import at_least, whole_number

SIZES = ("tiny", "base")
"""tiny: the test suite's 0.33M-parameter model; base: Florence-2-base's sizes (231M), random weights."""

MODES = ("full", "lora", "frozen", "generate", "load")
"""full: every weight; lora: r=16 on the language model; frozen: vision tower + projector frozen;
generate: the validation loop's generation (f2tune's evaluator against the reference's generate);
load: one loader worker's data loading (f2tune's dataset + collator against the reference's processor)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option is checked as it is parsed (argparse's message, exit status 2): a value the benchmark
    cannot run would otherwise surface as a `failed` row, a traceback from deep in a loop, or a row
    measuring something other than its label says."""
    parser.add_argument(
        "--sizes", type=names_of(SIZES), default="tiny,base", help="comma-separated: tiny, base (Florence-2-base sizes)"
    )
    parser.add_argument(
        "--modes", type=names_of(MODES), default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument(
        "--steps", type=at_least(1), default=4, help="batches per pass (two passes; the second is timed)"
    )
    parser.add_argument(
        "--repeats",
        type=at_least(1),
        default=1,
        help="rounds of every row (each row once per round, in order): the median of the rounds, and the "
        "range of each round's speed against its reference (for noisy machines and the tiny model)",
    )
    parser.add_argument("--batch-size", type=at_least(1), default=4)
    parser.add_argument("--tiny-image-size", type=image_side, default=96, help="a multiple of 32")
    parser.add_argument(
        "--base-image-size",
        type=image_side,
        default=192,
        help="a multiple of 32; 768 is the real size (577 image tokens)",
    )
    parser.add_argument("--precision", type=precision, default="32-true", help="f2tune's trainer.precision")
    parser.add_argument(
        "--reference-precision",
        default="32-true",
        choices=["32-true", "bf16-mixed"],
        help="the reference loop's: fp32 (the public scripts) or bf16 autocast around its forward",
    )
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: a GPU when torch sees one"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add an `f2tune +compile` row (trainer.compile: regional torch.compile; the warm-up pass compiles)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=positive_number,
        default=None,
        help="the device's bf16 peak for the MFU column (known NVIDIA GPUs are looked up)",
    )
    parser.add_argument("--threads", type=at_least(0), default=1, help="torch CPU threads (0: torch's default)")


def names_of(known: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A comma-separated list of some of `known`, each once: for `--sizes`, `--modes`."""

    def names(text: str) -> list[str]:
        given = [name.strip() for name in text.split(",")]
        unknown = [name for name in given if name not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, unknown))}: not one of {', '.join(known)}")
        if len(set(given)) < len(given):
            raise argparse.ArgumentTypeError(f"{text!r} names one twice")
        return given

    return names


def image_side(text: str) -> int:
    """A positive multiple of 32, the stride of the DaViT image encoder (the tiny processor refuses other sides)."""
    value = whole_number(text)
    if value < 32 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 32 (the image encoder's stride), got {value}")
    return value


def precision(text: str) -> str:
    """One of the recipe's `trainer.precision` values (the schema, imported only when `bench` runs)."""
    from f2tune.config.trainer import Precision

    if text not in get_args(Precision):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(get_args(Precision))}")
    return text


def positive_number(text: str) -> float:
    """A number above 0 (and finite): the peak divides the achieved TFLOP/s."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value
