"""`f2tune bench` / `python benchmarks/train_step.py`: the comparison table of `benchmarks/README.md`.

Each measurement runs in a forked child process, so that one loop's allocations (and the peak
memory they leave behind) do not count against the next.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Callable

import torch

from f2tune.bench.flops import ModelFlops, count_training_flops, peak_tflops, utilization
from f2tune.bench.generation import run_f2tune_generation, run_reference_generation
from f2tune.bench.loops import run_f2tune, run_reference
from f2tune.bench.measure import Timing, describe_machine, in_child
from f2tune.bench.options import add_arguments
from f2tune.bench.setups import batch_orders, f2tune_batches, mixed_samples, padding_share, reference_batches
from f2tune.testing.tiny import build_tiny_processor

HEADER = (
    "| size | image | mode | loop | label padding | step ms (median) | samples/s | peak MiB | speed vs reference"
    " | TFLOP/s | MFU |"
)


def run(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("f2tune").setLevel(logging.WARNING)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    threads = args.threads or torch.get_num_threads()
    print(f"machine: {describe_machine(device)}; torch {torch.__version__}, {threads} thread(s)")
    print(
        f"batch size {args.batch_size}, {args.steps} steps per pass, f2tune precision {args.precision},"
        f" reference precision {args.reference_precision}, bf16 peak {peak_tflops(device, args.peak_tflops) or '?'}"
        " TFLOP/s\n"
    )
    print(HEADER)
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes.split(","):
        image_size = args.tiny_image_size if size == "tiny" else args.base_image_size
        for mode in args.modes.split(","):
            for row in measure(size, mode, image_size, args, device):
                print(row, flush=True)
    return 0


def measure(size: str, mode: str, image_size: int, args: argparse.Namespace, device: torch.device) -> list[str]:
    processor = build_tiny_processor(image_size)
    samples = mixed_samples(args.steps * args.batch_size, image_size)
    orders = batch_orders(samples, processor, args.batch_size)
    reference = reference_batches(samples, processor, orders["random"])
    plain = f2tune_batches(samples, processor, orders["random"])
    grouped = f2tune_batches(samples, processor, orders["grouped"])
    pad = processor.tokenizer.pad_token_id
    cached = mode != "full"  # LoRA (peft freezes the base) and frozen leave the vision tower frozen

    def ours(batches: list[dict], cache: str, compiled: bool = False) -> Callable[[], Timing]:
        return lambda: run_f2tune(size, mode, processor, batches, device, args.precision, cache, compiled)

    variants: list[tuple[str, list[dict], Callable[[], Timing]]]
    if mode == "generate":  # the validation loop: ms per batch, samples generated, parsed (and scored) per s
        chosen = [[samples[i] for i in rows] for rows in orders["random"]]
        variants = [
            ("reference", reference, lambda: run_reference_generation(size, processor, reference, chosen, device)),
            ("f2tune evaluator", plain, lambda: run_f2tune_generation(size, processor, plain, device)),
        ]
    else:
        variants = [
            (
                "reference",
                reference,
                lambda: run_reference(size, mode, processor, reference, device, args.reference_precision),
            ),
            ("f2tune", plain, ours(plain, "off")),
        ]
        if cached:
            variants.append(("f2tune +cache", plain, ours(plain, "auto")))
        variants.append(("f2tune +grouped", grouped, ours(grouped, "off")))
        if cached:  # next to its uncached twin: the cache's own gain at either batch order
            variants.append(("f2tune +grouped +cache", grouped, ours(grouped, "auto")))
        if args.compile:
            cache = "auto" if cached else "off"
            variants.append(
                ("f2tune +grouped" + (" +cache" if cached else "") + " +compile", grouped, ours(grouped, cache, True))
            )
    flops = None if mode == "generate" else in_child(lambda: count_training_flops(size, processor, plain), args.threads)
    peak = peak_tflops(device, args.peak_tflops)
    rows, base_rate = [], None
    for name, batches, measure_fn in variants:
        timing = in_child(measure_fn, args.threads)
        prefix = f"| {size} | {image_size} | {mode} | {name} | {padding_share(batches, pad):.0%} |"
        if isinstance(timing, str):
            rows.append(f"{prefix} failed: {timing} | | | | | |")
            continue
        base_rate = base_rate or timing.samples_per_s
        if name.endswith("+compile"):
            prefix = prefix.replace("+compile", f"+compile (warm-up pass {timing.warmup_s:.0f} s)")
        rows.append(
            f"{prefix} {timing.step_s * 1000:.0f} | {timing.samples_per_s:.2f} | {timing.peak_mib:.0f} |"
            f" {timing.samples_per_s / base_rate:.2f}x | {utilization_cells(flops, name, timing, peak)} |"
        )
    return rows


def utilization_cells(flops: ModelFlops | str | None, loop: str, timing: Timing, peak: float | None) -> str:
    """The TFLOP/s and MFU cells of a row ("-" where nothing was counted or no peak is known)."""
    if not isinstance(flops, ModelFlops):
        return "- | -"
    per_sample = flops.language if "+cache" in loop else flops.full
    achieved, mfu = utilization(per_sample, timing.samples_per_s, peak)
    return f"{achieved:.3g} | " + (f"{mfu:.1%}" if mfu is not None else "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
