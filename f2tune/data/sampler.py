"""Length-grouped sampling: batches of samples with similar target lengths, so little of each batch
is padding.

Florence-2 data mixes three-word captions with `<OD>` answers of hundreds of `<loc_N>` tokens; a
random batch is padded to its longest target, so most decoder positions can be padding. Grouping
(as transformers' `group_by_length`) keeps the randomness of shuffling at the level of batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.tasks import format_target

NOMINAL_IMAGE_SIZE = (1000, 1000)
"""Structured targets are written with this size only to count their tokens: every `<loc_N>` is one
token whatever the image size, so no image has to be opened."""


class LengthGroupedSampler(DistributedSampler):
    """Indices for one process, in runs of `batch_size` of similar length.

    Each epoch: shuffle all indices (seeded by seed + epoch, the same on every process), cut them
    into mega-batches of `group_batches` global batches, sort each by length, cut into global batches
    of `batch_size * num_replicas`, shuffle the batch order; process `rank` takes every
    `num_replicas`-th index of each global batch. Every process gets the same number of indices
    (padded like `DistributedSampler` by repeating the first ones), and with one process every
    sample appears exactly once per epoch.

    A `DistributedSampler` subclass so that Lightning neither wraps it in another one (which would
    reshuffle the order) and calls `set_epoch` on it.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        group_batches: int = 50,
    ) -> None:
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.group_batches = group_batches

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        order = torch.cat([order, order[: self.total_size - len(order)]])  # pad to a multiple of num_replicas
        global_batch = self.batch_size * self.num_replicas
        batches = []
        for group in order.split(global_batch * self.group_batches):
            ranked = group[torch.argsort(self.lengths[group], descending=True, stable=True)]
            batches += list(ranked.split(global_batch))
        permutation = torch.randperm(len(batches), generator=generator)
        mine = [batches[i][self.rank :: self.num_replicas] for i in permutation.tolist()]
        return iter(torch.cat(mine).tolist())


def target_lengths(samples: Sequence[Sample], tokenizer, limit: int) -> list[int]:
    """Target length in tokens of each sample (cut at `limit`, as the collator cuts), without images."""
    texts = [_target_text(sample) for sample in samples]
    return [min(len(ids), limit) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


def _target_text(sample: Sample) -> str:
    if sample.reference is None:
        return sample.target
    try:
        return format_target(sample.task, sample.reference, NOMINAL_IMAGE_SIZE)
    except DataError:  # the dataset reports it when the sample is loaded; here it only needs a length
        return sample.target
