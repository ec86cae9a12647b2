"""`f2tune check-data`: every record of every split read once, every image opened, every problem
reported at once, target lengths measured against `data.max_target_tokens` and each prompt with its
image tokens against the positions of the model's encoder.

Fit reads records up front but opens images lazily and stops at the first bad one (or skips it);
on a large dataset that means finding problems one GPU-hour at a time. This pass uses the `skip`
semantics of `data.on_bad_record` to collect them all, and builds each sample's target text as
training would, so the token counts are those the collator will cut.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.progress import track
from transformers import Florence2Processor

from f2tune.config import DataConfig
from f2tune.data.check_pictures import SamplePictures
from f2tune.data.collate import input_lengths, overlong_input, target_limit_problem
from f2tune.data.dataset import sample_text
from f2tune.data.formats import read_source, source_name
from f2tune.data.formats.structured import check_opened
from f2tune.data.images import load_image
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError

KINDS = (
    ("invalid JSON", r"not valid JSON|expected a JSON|expected an object"),
    ("not UTF-8", r"not UTF-8 text"),
    ("missing image", r"image not found"),
    ("unreadable image", r"cannot read image"),
    ("empty source", r"the dataset is empty"),
    ("missing file", r"file not found"),
    ("missing field", r"missing (field|key|top-level key)|no answer"),
    ("unknown field", r"unknown field"),
    ("dangling reference", r"is not (listed )?in|differs from its annotation"),
    ("coordinates out of range", r"outside|x2 > x1|width and height must be positive"),
    ("bad location tokens", r"location token"),
    ("prompt too long", r"positions of the model's encoder"),
    ("recipe setting", r"^data\.max_target_tokens"),
    ("bad task or prompt", r"task token|task '|prompt"),
    ("wrong type or value", r"must |expected|need"),
)
"""(kind, pattern over the message) in order; the first match names a problem's kind."""


@dataclass
class SplitStats:
    """What one split holds: usable samples and their target lengths in tokens."""

    samples: int = 0
    target_tokens: list[int] = field(default_factory=list)

    def describe(self, limit: int) -> str:
        if not self.target_tokens:
            return f"{self.samples} usable samples"
        ordered = sorted(self.target_tokens)
        cut = sum(length > limit for length in ordered)
        return (
            f"{self.samples} usable samples; target tokens p50 {_percentile(ordered, 50)}, "
            f"p95 {_percentile(ordered, 95)}, max {ordered[-1]}; "
            f"{cut} ({100 * cut / len(ordered):.1f}%) longer than data.max_target_tokens={limit} would be cut"
        )


@dataclass
class DataReport:
    """All problems found (messages name file:line or the record) and per-split statistics."""

    max_target_tokens: int
    problems: list[str] = field(default_factory=list)
    splits: dict[str, SplitStats] = field(default_factory=dict)

    def counts_by_kind(self) -> Counter[str]:
        return Counter(kind_of(message) for message in self.problems)

    def render(self) -> str:
        lines = [f"{len(self.problems)} problem(s)" + (":" if self.problems else "")]
        lines += [f"  - [{kind_of(m)}] {m}" for m in self.problems]
        if self.problems:
            lines.append("by kind: " + ", ".join(f"{k} {n}" for k, n in self.counts_by_kind().most_common()))
        lines += [f"{split}: {stats.describe(self.max_target_tokens)}" for split, stats in self.splits.items()]
        return "\n".join(lines)


def kind_of(message: str) -> str:
    """The kind of a problem, from its message (`other` when no pattern of `KINDS` matches)."""
    return next((kind for kind, pattern in KINDS if re.search(pattern, message)), "other")


def check_data(
    config: DataConfig, processor: Florence2Processor, positions: int, pictures: SamplePictures | None = None
) -> DataReport:
    """Read every source of train/val/test, open every image, tokenize every prompt and target;
    `positions` is the model's text encoder length, which each prompt with its image tokens must fit.
    With `pictures`, the first usable samples of each split's tasks are drawn as training reads them."""
    report = DataReport(config.max_target_tokens)
    limit_problem = target_limit_problem(config.max_target_tokens, positions)
    if limit_problem is not None:
        report.problems.append(limit_problem)
    image_tokens = processor.image_processor.image_seq_length
    for split in ("train", "val", "test"):
        stats = report.splits[split] = SplitStats()
        for source in getattr(config, split):
            problems = RecordProblems("skip")
            try:
                samples = read_source(source, problems, split)
            except DataError as err:  # a whole file is unusable (missing, not JSON, empty)
                samples = []
                problems.found.append(f"{split} source '{source_name(source)}': {err}")
            report.problems += problems.found
            texts = _texts(samples, report.problems, f"{split} source '{source_name(source)}'")
            for start in range(0, len(texts), TOKENIZED_AT_ONCE):
                chunk = texts[start : start + TOKENIZED_AT_ONCE]
                lengths = input_lengths(processor, [prompt for _, prompt, _ in chunk])
                fitting = [text for text, length in zip(chunk, lengths) if length <= positions]
                report.problems += [
                    overlong_input(sample.origin, length, image_tokens, positions)
                    for (sample, _, _), length in zip(chunk, lengths)
                    if length > positions
                ]
                if pictures is not None:
                    pictures.add(split, fitting)
                stats.samples += len(fitting)
                if fitting:
                    encoded = processor.tokenizer([target for _, _, target in fitting], add_special_tokens=True)
                    stats.target_tokens += [len(ids) for ids in encoded["input_ids"]]
    return report


TOKENIZED_AT_ONCE = 1024
"""Samples whose prompts and targets are tokenized in one call (bounded memory on large splits)."""


def _texts(samples: list[Sample], problems: list[str], what: str) -> list[tuple[Sample, str, str]]:
    """(sample, prompt, target) of every usable sample, as the dataset builds them; bad ones go to
    `problems`. Each image file is decoded once, however many samples point at it: on COCO's 118k
    images minutes, hence the progress bar (`what` names the source there)."""
    sizes: dict[Path, tuple[int, int] | DataError] = {}
    texts = []
    for sample in track(samples, f"{what}: reading images", console=Console(stderr=True)):
        try:
            size = _image_size(sample, sizes)
            if sample.reference is None:
                texts.append((sample, sample.prompt, sample.target))
                continue
            check_opened(sample, size)
            texts.append((sample, *sample_text(sample, sample.reference, size)))
        except DataError as err:
            message = str(err)
            problems.append(message if message.startswith(sample.origin) else f"{sample.origin}: {message}")
    return texts


def _image_size(sample: Sample, sizes: dict[Path, tuple[int, int] | DataError]) -> tuple[int, int]:
    if not isinstance(sample.image, Path):
        return load_image(sample.image, sample.origin).size
    if sample.image not in sizes:
        try:
            image: Image.Image = load_image(sample.image, sample.origin)
            sizes[sample.image] = image.size
        except DataError as err:
            sizes[sample.image] = err
    found = sizes[sample.image]
    if isinstance(found, DataError):
        raise DataError(f"{sample.origin}: {str(found).split(': ', 1)[-1]}")
    return found


def _percentile(ordered: list[int], percent: float) -> int:
    """Nearest-rank percentile of a sorted list."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]
