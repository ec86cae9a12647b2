"""Data loading: what one loader worker delivers per second, f2tune's dataset + collator against the
reference scripts' dataset + processor call, on the same JPEG files.

A training step can only go as fast as the workers feed it: a GPU step that takes a few tens of
milliseconds for a batch needs as many workers as one worker's batch time is longer than that. Each
loop is a `DataLoader` with one worker, so the batch's trip to the training process (its tensors
moved into shared memory) is counted, over photos of COCO's usual size written once to a temporary
folder, so that decoding costs what it does in a real dataset. The main process only receives.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from f2tune.bench.measure import Timing, reset_peak_memory, timing_of
from f2tune.bench.setups import MAX_TARGET_TOKENS
from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.sample import Sample
from f2tune.data.shared_flag import SharedFlag

PHOTO_SIZE = (640, 480)
"""Most COCO images are 640 pixels on their long side."""


def as_photos(samples: list[Sample], folder: Path) -> list[Sample]:
    """`samples` with their images resized to `PHOTO_SIZE` and saved as JPEG files in `folder`."""
    photos = []
    for sample in samples:
        path = folder / f"{sample.id}.jpg"
        sample.image.render().convert("RGB").resize(PHOTO_SIZE).save(path, quality=90)
        photos.append(replace(sample, image=path))
    return photos


class ReferenceDataset(Dataset):
    """The public scripts' dataset: the opened image, the prompt and the target text."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, str, str]:
        sample = self.samples[index]
        return Image.open(sample.image).convert("RGB"), sample.prompt, sample.target


class ReferenceCollator:
    """The public scripts' collate function: the processor on the batch padded to the longest, and
    the targets tokenized as labels."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, items: list[tuple[Image.Image, str, str]]) -> dict[str, Any]:
        images, prompts, targets = zip(*items)
        inputs = self.processor(text=list(prompts), images=list(images), return_tensors="pt", padding=True)
        labels = self.processor.tokenizer(text=list(targets), return_tensors="pt", padding=True).input_ids
        return {"input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"], "labels": labels}


def run_reference_loading(processor, samples: list[Sample], order: list[list[int]]) -> Timing:
    with tempfile.TemporaryDirectory() as folder:
        dataset = ReferenceDataset(as_photos(samples, Path(folder)))
        return _timed(dataset, ReferenceCollator(processor), order)


def run_f2tune_loading(
    processor, samples: list[Sample], order: list[list[int]], digest_images: bool, images_cached: bool = False
) -> Timing:
    """f2tune's `SampleDataset` and `Florence2Collator`; with `digest_images`, as a run with the
    image feature cache has them (each image hashed for the cache's key), and with `images_cached`
    as they are once the cache holds every image (no pixels made)."""
    flag = SharedFlag()
    flag.set(images_cached)
    with tempfile.TemporaryDirectory() as folder:
        dataset = SampleDataset(as_photos(samples, Path(folder)))
        return _timed(dataset, Florence2Collator(processor, MAX_TARGET_TOKENS, digest_images, flag), order)


def _timed(dataset: Dataset, collate, order: list[list[int]]) -> Timing:
    """Seconds between batches received, over the second of two epochs (the first starts the worker
    and warms the file cache), with one persistent worker."""
    loader = DataLoader(dataset, batch_sampler=order, collate_fn=collate, num_workers=1, persistent_workers=True)
    reset_peak_memory(torch.device("cpu"))
    times = []
    for _ in range(2):
        times = []
        start = time.perf_counter()
        for _batch in loader:
            now = time.perf_counter()
            times.append(now - start)
            start = now
    return timing_of(times, sum(len(rows) for rows in order), torch.device("cpu"))
