"""Command-line options of the benchmark, apart from its heavy imports (the CLI builds every
command's parser at start)."""

from __future__ import annotations

import argparse

MODES = ("full", "lora", "frozen", "generate", "load")
"""full: every weight; lora: r=16 on the language model; frozen: vision tower + projector frozen;
generate: the validation loop's generation (f2tune's evaluator against the reference's generate);
load: one loader worker's data loading (f2tune's dataset + collator against the reference's processor)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="tiny,base", help="comma-separated: tiny, base (Florence-2-base sizes)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: full, lora, frozen, generate, load")
    parser.add_argument("--steps", type=int, default=4, help="batches per pass (two passes; the second is timed)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of every row (each row once per round, in order): the median of the rounds, and the "
        "range of each round's speed against its reference (for noisy machines and the tiny model)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tiny-image-size", type=int, default=96)
    parser.add_argument("--base-image-size", type=int, default=192, help="768 is the real size (577 image tokens)")
    parser.add_argument("--precision", default="32-true", help="f2tune's trainer.precision")
    parser.add_argument(
        "--reference-precision",
        default="32-true",
        choices=["32-true", "bf16-mixed"],
        help="the reference loop's: fp32 (the public scripts) or bf16 autocast around its forward",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add an `f2tune +compile` row (trainer.compile: regional torch.compile; the warm-up pass compiles)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's bf16 peak for the MFU column (known NVIDIA GPUs are looked up)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
