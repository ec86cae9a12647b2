"""Evaluation shares: each sample on one process, the shares padded to one length with placeholders."""

from __future__ import annotations

import pytest

from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.evaluation_shares import PADDING, PADDING_ITEM, EvaluationSampler, PaddedDataset
from f2tune.testing.shapes import shape_samples


@pytest.mark.parametrize(("size", "processes"), [(5, 2), (8, 2), (3, 4), (10, 3), (1, 1)])
def test_every_sample_is_dealt_once_and_the_shares_are_one_length(size: int, processes: int) -> None:
    shares = [list(EvaluationSampler(size, processes, rank)) for rank in range(processes)]
    assert len({len(share) for share in shares}) == 1
    assert all(len(share) == len(EvaluationSampler(size, processes, 0)) for share in shares)
    dealt = [index for share in shares for index in share if index != PADDING]
    assert sorted(dealt) == list(range(size))


def test_shares_are_dealt_in_order_as_lightning_deals_them() -> None:
    assert [list(EvaluationSampler(5, 2, rank)) for rank in (0, 1)] == [[0, 2, 4], [1, 3, PADDING]]


def test_the_collator_leaves_the_padding_out(processor) -> None:
    dataset = PaddedDataset(SampleDataset(shape_samples(2, seed=3)))
    collate = Florence2Collator(processor, 16)
    batch = collate([dataset[1], dataset[PADDING]])
    assert batch["ids"] == [dataset.dataset.samples[1].id] and batch["skipped_records"] == 0
    empty = collate([dataset[PADDING], dataset[PADDING]])
    assert "ids" not in empty and empty["skipped_records"] == 0
    assert dataset[PADDING] is PADDING_ITEM
