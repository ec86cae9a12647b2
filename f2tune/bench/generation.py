"""Validation generation: f2tune's `Evaluator` against the reference scripts' `generate` call.

The reference asks for 1024 new tokens with 3 beams whatever the task (capped at what the decoder
can position, past which generation crashes), then runs the processor's post-processing. f2tune's
evaluator generates each task's rows with that task's `max_new_tokens` (64 for a caption, 512 for
`<OD>`), parses and scores them. With random weights neither stops early at `</s>`, so the rows show
the cost of the caps themselves: what validation pays while a model has not yet learned to stop.
"""

from __future__ import annotations

import time

import torch

from f2tune.bench.measure import Timing, reset_peak_memory, sync, timing_of
from f2tune.bench.setups import build_model
from f2tune.config.sections import EvalConfig
from f2tune.data.sample import Sample
from f2tune.eval.evaluator import Evaluator
from f2tune.eval.generate import MODEL_INPUTS

REFERENCE_MAX_NEW_TOKENS = 1024


@torch.no_grad()
def run_reference_generation(
    size: str, processor, batches: list[dict], samples: list[list[Sample]], device: torch.device
) -> Timing:
    model = build_model(size, processor).to(device).eval()
    longest = model.config.text_config.max_position_embeddings - 2
    reset_peak_memory(device)
    times = []
    for batch, chosen in zip(batches, samples):
        sync(device)
        start = time.perf_counter()
        output = model.generate(
            input_ids=batch["input_ids"].to(device),
            pixel_values=batch["pixel_values"].to(device),
            max_new_tokens=min(REFERENCE_MAX_NEW_TOKENS, longest),
            num_beams=3,
        )
        for text, sample in zip(processor.batch_decode(output, skip_special_tokens=False), chosen):
            processor.post_process_generation(text, task=sample.task, image_size=(sample.image.size,) * 2)
        sync(device)
        times.append(time.perf_counter() - start)
    return timing_of(times, sum(len(c) for c in samples), device)


@torch.no_grad()
def run_f2tune_generation(size: str, processor, batches: list[dict], device: torch.device) -> Timing:
    model = build_model(size, processor).to(device).eval()
    tasks = {task for batch in batches for task in batch["tasks"]}
    evaluator = Evaluator(tasks, EvalConfig(max_samples=10**6), processor)
    reset_peak_memory(device)
    times = []
    for batch in batches:
        moved = batch | {k: batch[k].to(device) for k in MODEL_INPUTS}
        sync(device)
        start = time.perf_counter()
        evaluator.update(model, moved)
        sync(device)
        times.append(time.perf_counter() - start)
    evaluator.compute()
    return timing_of(times, sum(len(b["ids"]) for b in batches), device)
