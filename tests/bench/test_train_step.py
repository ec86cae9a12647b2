"""The benchmark measures what it claims: real base sizes, the reference's unmasked padding, and a
complete table on the tiny model (speed itself is never asserted)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import partial

import pytest
import torch

from f2tune.bench.flops import count_training_flops, peak_tflops, utilization
from f2tune.bench.loading import ReferenceCollator, ReferenceDataset, as_photos
from f2tune.bench.loops import run_reference
from f2tune.bench.main import main
from f2tune.bench.measure import Timing, in_child
from f2tune.bench.setups import (
    batch_orders,
    build_model,
    f2tune_batches,
    mixed_samples,
    padding_share,
    reference_batches,
)
from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.testing.tiny import build_tiny_processor

CPU = torch.device("cpu")


def test_base_config_has_florence2_base_sizes(processor):
    with torch.device("meta"):
        model = build_model("base", processor)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert 229 < count < 233  # DESIGN.md: 231.4M
    assert model.config.text_config.vocab_size > max(processor.tokenizer.get_vocab().values())


def test_reference_batches_train_on_padding_and_f2tune_batches_do_not(processor):
    samples = mixed_samples(12, image_size=96)
    assert {s.task for s in samples} == {"<CAPTION>", "<OD>"}
    orders = batch_orders(samples, processor, batch_size=4)
    assert sorted(sum(orders["grouped"], [])) == sorted(sum(orders["random"], [])) == list(range(12))
    reference = reference_batches(samples, processor, orders["random"])
    ours = f2tune_batches(samples, processor, orders["random"])
    pad = processor.tokenizer.pad_token_id
    assert any((b["labels"] == pad).any() for b in reference)
    assert not any((b["labels"] == pad).any() for b in ours)
    assert padding_share(reference, pad) == padding_share(ours, pad) > 0
    assert padding_share(f2tune_batches(samples, processor, orders["grouped"]), pad) < padding_share(ours, pad)


def test_benchmark_prints_a_row_per_loop(capsys):
    levels = {name: logging.getLogger(name).level for name in ("f2tune", "lightning.pytorch")}
    assert main(["--sizes", "tiny", "--modes", "full,lora", "--steps", "2", "--batch-size", "2"]) == 0
    # quiet while measuring only: left at WARNING, f2tune's later lines in the process went unsaid
    assert {name: logging.getLogger(name).level for name in levels} == levels
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    loops = [row.split("|")[4].strip() for row in rows]
    # LoRA leaves the vision tower frozen, so its f2tune rows run with and without the feature cache
    assert loops == ["reference", "f2tune", "f2tune +grouped"] + [
        "reference",
        "f2tune",
        "f2tune +cache",
        "f2tune +grouped",
        "f2tune +grouped +cache",
    ]
    assert not any("failed" in row for row in rows)


def test_generation_rows_time_the_evaluator_against_the_reference(capsys):
    assert main(["--sizes", "tiny", "--modes", "generate", "--steps", "1", "--batch-size", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[4].strip() for row in rows] == ["reference", "f2tune evaluator"]
    assert not any("failed" in row for row in rows)


def test_loading_rows_time_one_worker_of_each_loop(capsys):
    assert main(["--sizes", "tiny", "--modes", "load", "--steps", "2", "--batch-size", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[4].strip() for row in rows] == [
        "reference",
        "f2tune",
        "f2tune +cache (image digests)",
        "f2tune +cache, epochs after the first (no pixels)",
    ]
    assert not any("failed" in row for row in rows)


def test_both_loaders_decode_the_same_photos_into_the_same_pixels(processor, tmp_path):
    """The loading rows compare equal work: the same files become the same model inputs."""
    photos = as_photos(mixed_samples(3, image_size=96), tmp_path)
    reference = ReferenceCollator(processor)([ReferenceDataset(photos)[i] for i in range(3)])
    dataset = SampleDataset(photos)
    ours = Florence2Collator(processor, 64, digest_images=True)([dataset[i] for i in range(3)])
    assert torch.equal(reference["pixel_values"], ours["pixel_values"])
    assert torch.equal(reference["input_ids"], ours["input_ids"])  # the text is made with stand-in images
    assert len(set(ours["image_digests"])) == 3


def test_flops_are_counted_per_sample_and_the_cache_leaves_the_vision_tower_out():
    """Florence-2-base at 768x768: the DaViT's forward is 380.7 GFLOPs per image (DESIGN.md), and a
    training step counts 3 forwards."""
    processor = build_tiny_processor(768)
    samples = mixed_samples(4, image_size=768)
    batches = f2tune_batches(samples, processor, [[0, 1], [2, 3]])
    flops = in_child(lambda: count_training_flops("base", processor, batches))  # as the benchmark runs it
    assert (flops.full - flops.language) / 3 == pytest.approx(380.7e9, rel=1e-3)
    assert flops.language > 0.1 * flops.full


def test_mfu_uses_the_known_peak_or_the_given_one():
    achieved, mfu = utilization(1e12, 2.0, 8.0)
    assert (achieved, mfu) == (2.0, 0.25)
    assert utilization(1e12, 2.0, None) == (2.0, None)
    assert peak_tflops(torch.device("cpu"), None) is None
    assert peak_tflops(torch.device("cpu"), 100.0) == 100.0


COMPILE_RUN = """
import functools

from f2tune.bench.main import main
from f2tune.model.compile import compile_blocks
from f2tune.train import setup

setup.compile_blocks = functools.partial(compile_blocks, backend="aot_eager")
main(["--sizes", "tiny", "--modes", "lora", "--steps", "1", "--batch-size", "2", "--compile"])
"""


def test_compile_row_reports_its_warm_up():
    """`--compile` adds a row compiled as `trainer.compile` does (aot_eager here: inductor's C++ build
    takes minutes on this CPU) and says how long the untimed compiling pass took. In a fresh process,
    as the command runs: compiling in a child forked from this test process fails, because other
    tests have started torch's thread pool, which a forked child cannot use."""
    result = subprocess.run([sys.executable, "-c", COMPILE_RUN], capture_output=True, text=True, timeout=600)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| tiny")]
    assert rows and rows[-1].split("|")[4].strip().startswith("f2tune +grouped +cache +compile (warm-up pass ")
    assert not any("failed" in row for row in rows), result.stdout


def test_a_measurement_that_dies_is_reported_not_waited_for():
    assert in_child(lambda: os._exit(3)) == "the measuring process died (exit code 3)"


def test_cuda_rows_run_in_fresh_processes_on_pickled_work(processor):
    """For a CUDA device the rows run in spawned children (torch refuses CUDA in a child forked from
    a process that has initialized it, as the table's header does): the real work items pickle and
    run there. The work here runs on the CPU; only the start method follows the CUDA device."""
    samples = mixed_samples(4, image_size=96)
    order = batch_orders(samples, processor, batch_size=2)["random"]
    work = partial(run_reference, "tiny", "lora", processor, reference_batches(samples, processor, order), CPU)
    timing = in_child(work, threads=1, device=torch.device("cuda"))
    assert isinstance(timing, Timing) and timing.samples_per_s > 0
    assert in_child(partial(os.getpid), device=torch.device("cuda")) != os.getpid()


def test_rounds_give_the_median_and_the_range_of_the_speed_within_rounds(capsys):
    assert main(["--sizes", "tiny", "--modes", "full", "--steps", "1", "--batch-size", "2", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 round(s)" in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| tiny")]
    assert [row[4].strip() for row in rows] == ["reference", "f2tune", "f2tune +grouped"]
    assert rows[0][9].strip() == "1.00x (1.00-1.00)"
    low, high = (float(x) for x in rows[1][9].split("(")[1].rstrip("x) ").split("-"))
    assert low <= float(rows[1][9].split("x")[0]) <= high
