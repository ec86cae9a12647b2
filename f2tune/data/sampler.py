"""Training samplers beyond `DistributedSampler`: length-grouped batches, and shares of the data that
each process keeps from epoch to epoch.

Length grouping: Florence-2 data mixes three-word captions with `<OD>` answers of hundreds of
`<loc_N>` tokens; a random batch is padded to its longest target, so most decoder positions can be
padding. Grouping (as transformers' `group_by_length`) keeps the randomness of shuffling at the level
of batches.

Stable shares: with the image feature cache on, a process can only reuse the features of images it
has seen itself. `DistributedSampler` deals the samples out anew every epoch, so with N processes
only about 1/N of a process's second-epoch images would be in its cache (1/8 on 8 GPUs). With
`stable_shares` the samples are dealt once (from `seed`) and each epoch reorders a process's own
share (from `seed + epoch`): every epoch after the first is served from the cache.
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


def share_of(size: int, num_replicas: int, rank: int, seed: int) -> torch.Tensor:
    """Process `rank`'s indices of `size` samples dealt once from `seed`; all shares are the same
    length, the last ones padded by repeating the first dealt, as `DistributedSampler` pads."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    total = -(-size // num_replicas) * num_replicas
    return order.repeat(-(-total // size))[:total][rank::num_replicas]  # repeated whole when size < num_replicas


class StableShareSampler(DistributedSampler):
    """This process's share of the samples, the same every epoch, in a new order each epoch (see
    the module docstring); a `DistributedSampler` so that Lightning keeps it and sets its epoch."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.share = share_of(size, num_replicas, rank, seed)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(self.share[torch.randperm(len(self.share), generator=generator)].tolist())


class LengthGroupedSampler(DistributedSampler):
    """Indices for one process, in runs of `batch_size` of similar length.

    Each epoch: shuffle all indices (seeded by seed + epoch, the same on every process), cut them
    into mega-batches of `group_batches` global batches, sort each by length, cut into global batches
    of `batch_size * num_replicas`, shuffle the batch order; process `rank` takes every
    `num_replicas`-th index of each global batch. Every process gets the same number of indices
    (padded like `DistributedSampler` by repeating the first ones), and with one process every
    sample appears exactly once per epoch.

    With `stable_shares`, each process groups its own share (`share_of`) the same way, and all
    processes put their batches in the same order of length ranks (one generator seed), so the
    batches that step together are still of similar length.

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
        stable_shares: bool = False,
    ) -> None:
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.group_batches = group_batches
        self.share = share_of(len(lengths), num_replicas, rank, seed) if stable_shares else None

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.share is not None:  # the same draws on every process: equal shares, one seed
            own = self.share[torch.randperm(len(self.share), generator=generator)]
            return iter(self._grouped(own, self.batch_size, generator, 1, 0).tolist())
        order = torch.randperm(len(self.lengths), generator=generator)
        # pad to a multiple of num_replicas, repeated whole where there are fewer samples than processes
        order = order.repeat(-(-self.total_size // max(len(order), 1)))[: self.total_size]
        global_batch = self.batch_size * self.num_replicas
        return iter(self._grouped(order, global_batch, generator, self.num_replicas, self.rank).tolist())

    def _grouped(
        self, order: torch.Tensor, batch: int, generator: torch.Generator, num_replicas: int, rank: int
    ) -> torch.Tensor:
        """`order` (shuffled) cut into mega-batches of `group_batches` batches of `batch`, each sorted
        by length and cut into batches, put in a shuffled order; of each, `rank`'s every
        `num_replicas`-th index.

        The one short batch (the end of the last mega-batch) stays last: the loader cuts this
        stream into batches of its own, and a short batch in the middle would shift every later
        cut across two length groups (padding five times the grouped amount was measured)."""
        batches = []
        for group in order.split(batch * self.group_batches):
            ranked = group[torch.argsort(self.lengths[group], descending=True, stable=True)]
            batches += list(ranked.split(batch))
        short = batches.pop() if batches and len(batches[-1]) < batch else None
        permutation = torch.randperm(len(batches), generator=generator)
        ordered = [batches[i] for i in permutation.tolist()] + ([short] if short is not None else [])
        return torch.cat([part[rank::num_replicas] for part in ordered])


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
