"""A training loader that resumes mid-epoch with the same data order.

Lightning 2.6 saves a loader's position only if the loader has `state_dict`/`load_state_dict`
(`_Stateful`), and on resume it does not skip anything itself: it expects the loader to yield the
rest of the epoch. A plain `DataLoader` with `shuffle=True` would restart the epoch with a new
random order, so a resumed run would see some samples twice and others never, and its loss would
not follow the uninterrupted run's.

Every training sampler draws its epoch's order from `seed + epoch` alone (`DistributedSampler`,
`WeightedEpochSampler`, `LengthGroupedSampler`; no global RNG), so the order can be recomputed after
a restart; `ResumableSampler` wraps it and skips the samples that were already trained on.
`ResumableLoader` stores how many batches of the epoch the training loop has consumed (not how
many the loader has produced: Lightning prefetches one batch, worker processes several).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from f2tune.data.sampler import share_of
from f2tune.log import warn


class WeightedEpochSampler(DistributedSampler):
    """Indices drawn with replacement by per-sample weight (source mixtures), from `seed + epoch`.

    Replaces `WeightedRandomSampler`, whose draws depend on the generator's state and so cannot be
    redrawn after a restart. Every rank draws the same indices and takes every `num_replicas`-th;
    with `stable_shares` (`f2tune.data.sampler`), each rank draws only from its own share.
    """

    def __init__(
        self, weights: torch.Tensor, seed: int = 0, num_replicas: int = 1, rank: int = 0, stable_shares: bool = False
    ) -> None:
        super().__init__(weights, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.weights = weights
        self.share = share_of(len(weights), num_replicas, rank, seed) if stable_shares else None

    def __iter__(self) -> Iterator[int]:
        if self.share is not None:  # each rank its own draws, from its own share
            generator = torch.Generator().manual_seed((self.seed + self.epoch) * self.num_replicas + self.rank)
            drawn = torch.multinomial(self.weights[self.share], self.num_samples, replacement=True, generator=generator)
            return iter(self.share[drawn].tolist())
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=generator)
        return iter(drawn[self.rank : self.total_size : self.num_replicas].tolist())


class ResumableSampler(DistributedSampler):
    """Wraps a sampler whose order depends only on its epoch; after `resume` it skips the samples
    of that epoch that were already trained on, once.

    A `DistributedSampler` itself so that Lightning keeps it under DDP (instead of wrapping it and
    losing the skip) and calls its `set_epoch`, which it passes on.
    """

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self._skip = 0
        self._skip_epoch = -1

    def __getattr__(self, name: str) -> Any:  # epoch, num_replicas, rank, ...: those of the wrapped sampler
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[int]:
        skip = self._skip if self.inner.epoch == self._skip_epoch else 0
        self._skip, self._skip_epoch = 0, -1  # once: a later pass over this epoch is a full one
        return itertools.islice(iter(self.inner), skip, None)

    def resume(self, epoch: int, consumed: int) -> tuple[int, int]:
        """Continue epoch `epoch` after its first `consumed` samples (of this rank); returns the
        (epoch, samples skipped) it continues with."""
        if consumed >= len(self.inner):  # the epoch was finished: the next one starts from its beginning
            epoch, consumed = epoch + 1, 0
        self.inner.set_epoch(epoch)
        self._skip, self._skip_epoch = consumed, epoch
        return epoch, consumed


class ResumableLoader(DataLoader):
    """A `DataLoader` over a `ResumableSampler` whose position travels in Lightning checkpoints.

    `consumed_batches` returns how many batches of the current epoch the training loop has used
    (the datamodule reads it from the trainer's progress counters).
    """

    def __init__(self, *args: Any, consumed_batches: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.sampler, ResumableSampler), "ResumableLoader needs a ResumableSampler"
        self.consumed_batches = consumed_batches
        self._resumed: tuple[int, int, int] | None = None
        """(epoch, samples skipped, batches counted then) of the epoch a resume continued: its batch
        count includes the batches of before, of another batch size or number of processes."""

    def state_dict(self) -> dict[str, int]:
        batches = self._batches()
        samples = batches * (self.batch_size or 1)
        if self._resumed is not None and self._resumed[0] == self.sampler.epoch:
            _, skipped, before = self._resumed
            samples = skipped + (batches - before) * (self.batch_size or 1)
        return {"epoch": self.sampler.epoch, "samples": samples, "processes": self.processes}

    def _batches(self) -> int:
        return self.consumed_batches() if self.consumed_batches is not None else 0

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skips what every process of the saved run trained of its epoch, also when the run goes on
        with another number of processes (a job restarted on fewer GPUs): each process's count is
        rescaled to the same share of the epoch, so that with plain shuffling, whose order does not
        depend on the number of processes, the rest of the epoch is exactly the samples not trained
        yet. The other samplers draw by process (length groups, weights, fixed shares): there the
        rest of that epoch is near it, and the log says so."""
        saved = state.get("processes", self.processes)  # checkpoints before the count was kept: the same
        if saved != self.processes and type(self.sampler.inner) is not DistributedSampler:
            warn(
                f"resumed on {self.processes} training processes, saved on {saved}: the rest of epoch "
                f"{state['epoch']} is drawn for {self.processes}, so some of its samples may come twice or not "
                "at all (this data's sampler orders each process's share); the next epochs are whole"
            )
        epoch, skipped = self.sampler.resume(state["epoch"], state["samples"] * saved // self.processes)
        # the training loop's batch count of the epoch is restored with the checkpoint; a finished
        # epoch's count starts again from 0 in the next one
        self._resumed = (epoch, skipped, self._batches() if epoch == state["epoch"] else 0)

    @property
    def processes(self) -> int:
        """The number of training processes sharing each epoch."""
        return self.sampler.num_replicas
