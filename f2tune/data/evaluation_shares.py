"""Each evaluation sample on exactly one process, every process running the same number of batches.

Under DDP Lightning deals a validation or test split out with a `DistributedSampler`, which evens
the shares by repeating the first samples: with 5 samples on 2 processes sample 0 was generated,
scored and written to the predictions twice, and every metric and the loss counted it twice. The
shares must stay the same length (the processes agree on a stop at the end of each batch, one
collective per batch), so they are padded here with a placeholder instead, which the dataset
answers with `PADDING_ITEM` and the collator leaves out of the batch: a process may get a batch
with fewer samples, or none, which the evaluation step already takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset, DistributedSampler

PADDING = -1
"""The index that pads a share; not a sample's."""

PADDING_ITEM: dict[str, Any] = {"padding": True}


def is_padding(item: dict[str, Any] | None) -> bool:
    """Whether a dataset item is `PADDING_ITEM` (None: a record `on_bad_record: skip` dropped)."""
    return item is not None and item.get("padding", False)


class EvaluationSampler(DistributedSampler):
    """Process `rank`'s samples: every `num_replicas`-th from `rank` on, in order (as Lightning's own
    sampler deals them), then `PADDING` up to the longest share. A `DistributedSampler` so that
    Lightning keeps it rather than wrapping it in its own."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        share = list(range(self.rank, len(self.dataset), self.num_replicas))
        return iter(share + [PADDING] * (self.num_samples - len(share)))


class PaddedDataset(Dataset):
    """`dataset` whose `PADDING` index is answered with `PADDING_ITEM`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return PADDING_ITEM if index == PADDING else self.dataset[index]
