"""`f2tune bench` / `python benchmarks/train_step.py`: the comparison table of `benchmarks/README.md`.

Each measurement runs in a child process (forked on a CPU, spawned for CUDA: `in_child`), so that
one loop's allocations (and the peak memory they leave behind) do not count against the next.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import torch

from f2tune.bench.flops import ModelFlops, count_training_flops, peak_tflops, utilization
from f2tune.bench.generation import run_f2tune_generation, run_reference_generation
from f2tune.bench.loading import run_f2tune_loading, run_reference_loading
from f2tune.bench.loops import run_f2tune, run_reference
from f2tune.bench.measure import Timing, describe_machine, in_child
from f2tune.bench.options import add_arguments
from f2tune.bench.setups import batch_orders, f2tune_batches, mixed_samples, padding_share, reference_batches
from f2tune.errors import F2TuneError
from f2tune.predict.load import inference_device
from f2tune.testing.tiny import build_tiny_processor


@dataclass
class Variant:
    """One row of the table: its label, the batches it trains on, the measurement, whether the
    image feature cache is on and whether the blocks are compiled."""

    label: str
    batches: list[dict]
    run: Callable[[], Timing]
    cached: bool = False
    compiled: bool = False


T = TypeVar("T")

HEADER = (
    "| size | image | mode | loop | label padding | step ms (median) | samples/s | peak MiB | speed vs reference"
    " | TFLOP/s | MFU |"
)


def run(args: argparse.Namespace) -> int:
    device = inference_device(args.device)  # `cuda` where torch sees none is refused here, not in the first row
    with quiet():
        return _print_table(args, device)


def _print_table(args: argparse.Namespace, device: torch.device) -> int:
    threads = args.threads or torch.get_num_threads()
    print(f"machine: {describe_machine(device)}; torch {torch.__version__}, {threads} thread(s)")
    print(
        f"batch size {args.batch_size}, {args.steps} steps per pass, {args.repeats} round(s),"
        f" f2tune precision {args.precision},"
        f" reference precision {args.reference_precision}, bf16 peak {peak_tflops(device, args.peak_tflops) or '?'}"
        " TFLOP/s\n"
    )
    print(HEADER)
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        image_size = args.tiny_image_size if size == "tiny" else args.base_image_size
        for mode in args.modes:
            for row in measure(size, mode, image_size, args, device):
                print(row, flush=True)
    return 0


QUIET_LEVELS = {"lightning.pytorch": logging.ERROR, "f2tune": logging.WARNING}


@contextmanager
def quiet() -> Iterator[None]:
    """Nothing but the table on stdout: warnings and Lightning's and f2tune's info lines off, until
    the table is done (a process that goes on after it, a test suite, logs as before)."""
    levels = {name: logging.getLogger(name).level for name in QUIET_LEVELS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        for name, level in QUIET_LEVELS.items():
            logging.getLogger(name).setLevel(level)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def quietly(work: Callable[[], T]) -> T:
    """`work` in a measuring process, quiet as the table's: a spawned one (CUDA) inherits none of it."""
    with quiet():
        return work()


def measure(size: str, mode: str, image_size: int, args: argparse.Namespace, device: torch.device) -> list[str]:
    processor = build_tiny_processor(image_size)
    samples = mixed_samples(args.steps * args.batch_size, image_size)
    orders = batch_orders(samples, processor, args.batch_size)
    flops = None
    if mode == "load":  # one loader worker, from the image files on: no batches built beforehand
        variants = loading_variants(processor, samples, orders["random"])
    else:
        reference = reference_batches(samples, processor, orders["random"])
        plain = f2tune_batches(samples, processor, orders["random"])
        if mode == "generate":  # the validation loop: ms per batch, samples generated, parsed (and scored) per s
            chosen = [[samples[i] for i in rows] for rows in orders["random"]]
            reference_run = partial(run_reference_generation, size, processor, reference, chosen, device)
            f2tune_run = partial(run_f2tune_generation, size, processor, plain, device)
            variants = [Variant("reference", reference, reference_run), Variant("f2tune evaluator", plain, f2tune_run)]
        else:
            grouped = f2tune_batches(samples, processor, orders["grouped"])
            variants = training_variants(size, mode, processor, (reference, plain, grouped), args, device)
            counting = partial(count_training_flops, size, processor, plain)
            flops = in_child(partial(quietly, counting), args.threads, device)
    peak = peak_tflops(device, args.peak_tflops)
    runs = measured_rounds(variants, args.repeats, args.threads, device)
    rows = []
    for variant, timings in zip(variants, runs):
        failed = next((t for t in timings if isinstance(t, str)), None)
        timing = failed or median_timing(timings)
        label = variant.label
        if variant.compiled and not isinstance(timing, str):
            label += f" (warm-up pass {timing.warmup_s:.0f} s)"
        padding = f"{padding_share(variant.batches, processor.tokenizer.pad_token_id):.0%}" if variant.batches else "-"
        prefix = f"| {size} | {image_size} | {mode} | {label} | {padding} |"
        if isinstance(timing, str):
            rows.append(f"{prefix} failed: {timing} | | | | | |")
            continue
        rows.append(
            f"{prefix} {timing.step_s * 1000:.0f} | {timing.samples_per_s:.2f} | {timing.peak_mib:.0f} |"
            f" {speed_cell(timings, runs[0])} | {utilization_cells(flops, variant.cached, timing, peak)} |"
        )
    return rows


def measured_rounds(
    variants: list[Variant], repeats: int, threads: int, device: torch.device
) -> list[list[Timing | str]]:
    """Each variant's timings, one per round; a round measures every variant once, one after the
    other, so that the ratios taken within a round compare runs the machine's drift (clock, other
    jobs) touched alike."""
    runs: list[list[Timing | str]] = [[] for _ in variants]
    for _ in range(repeats):
        for timings, variant in zip(runs, variants):
            timings.append(in_child(partial(quietly, variant.run), threads, device))
    return runs


def median_timing(timings: list[Timing]) -> Timing:
    """The rounds' median step time and samples/s, and their highest peak memory."""
    return Timing(
        step_s=statistics.median(t.step_s for t in timings),
        samples_per_s=statistics.median(t.samples_per_s for t in timings),
        peak_mib=max(t.peak_mib for t in timings),
        warmup_s=statistics.median(t.warmup_s for t in timings),
    )


def speed_cell(timings: list[Timing], reference: list[Timing | str]) -> str:
    """samples/s over the reference's in the same round: the median ratio, and with several rounds
    their range; "-" where the reference failed."""
    ratios = [t.samples_per_s / r.samples_per_s for t, r in zip(timings, reference) if isinstance(r, Timing)]
    if not ratios:
        return "-"
    spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return f"{statistics.median(ratios):.2f}x{spread}"


def training_variants(
    size: str,
    mode: str,
    processor,
    batches: tuple[list[dict], list[dict], list[dict]],
    args: argparse.Namespace,
    device: torch.device,
) -> list[Variant]:
    """The reference, then f2tune on the same (random-order) batches and on length-grouped ones,
    each with the image feature cache where the vision tower is frozen (LoRA, frozen)."""
    reference, plain, grouped = batches
    cacheable = mode != "full"  # LoRA (peft freezes the base) and frozen leave the vision tower frozen

    def ours(label: str, batches: list[dict], cached: bool = False, compiled: bool = False) -> Variant:
        cache = "auto" if cached else "off"
        run = partial(run_f2tune, size, mode, processor, batches, device, args.precision, cache, compiled)
        label += (" +cache" if cached else "") + (" +compile" if compiled else "")
        return Variant(label, batches, run, cached, compiled)

    reference_run = partial(run_reference, size, mode, processor, reference, device, args.reference_precision)
    variants = [Variant("reference", reference, reference_run), ours("f2tune", plain)]
    if cacheable:
        variants.append(ours("f2tune", plain, cached=True))
    variants.append(ours("f2tune +grouped", grouped))
    if cacheable:  # next to its uncached twin: the cache's own gain at either batch order
        variants.append(ours("f2tune +grouped", grouped, cached=True))
    if args.compile:
        variants.append(ours("f2tune +grouped", grouped, cached=cacheable, compiled=True))
    return variants


def loading_variants(processor, samples: list, order: list[list[int]]) -> list[Variant]:
    """The reference's processor call against f2tune's dataset + collator, without and with the
    image digests a run with the feature cache has its workers compute, and in the epochs after the
    cache holds every image (digests, no pixels)."""
    loading = partial(run_f2tune_loading, processor, samples, order)
    return [
        Variant("reference", [], partial(run_reference_loading, processor, samples, order)),
        Variant("f2tune", [], partial(loading, digest_images=False)),
        Variant("f2tune +cache (image digests)", [], partial(loading, digest_images=True)),
        Variant("f2tune +cache, epochs after the first (no pixels)", [], partial(loading, True, True)),
    ]


def utilization_cells(flops: ModelFlops | str | None, cached: bool, timing: Timing, peak: float | None) -> str:
    """The TFLOP/s and MFU cells of a row ("-" where nothing was counted or no peak is known); a
    cached run does not run the vision tower after its first pass, so its FLOPs leave it out."""
    if not isinstance(flops, ModelFlops):
        return "- | -"
    per_sample = flops.language if cached else flops.full
    achieved, mfu = utilization(per_sample, timing.samples_per_s, peak)
    return f"{achieved:.3g} | " + (f"{mfu:.1%}" if mfu is not None else "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except F2TuneError as err:  # as `f2tune bench` says it: one line, exit status 2
        parser.error(str(err))
