"""Length-grouped batches: less padding than random batches, each sample once per epoch, same
number of batches on every process. Stable shares (the feature cache under DDP): each process keeps
its samples from epoch to epoch."""

from __future__ import annotations

import random

import torch
from helpers import tiny_recipe

from f2tune.data.datamodule import Florence2DataModule
from f2tune.data.resume import WeightedEpochSampler
from f2tune.data.sample import Sample
from f2tune.data.sampler import LengthGroupedSampler, StableShareSampler, share_of, target_lengths
from f2tune.recipe import validate_recipe


def _lengths(count: int = 203) -> list[int]:
    rng = random.Random(0)
    return [rng.choice([rng.randint(3, 12), rng.randint(20, 250)]) for _ in range(count)]


def _padding(order: list[int], lengths: list[int], batch_size: int) -> int:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_grouped_batches_pad_less_and_hold_every_sample_once():
    lengths = _lengths()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    shuffled = random.Random(1).sample(range(len(lengths)), len(lengths))
    assert _padding(order, lengths, 8) < _padding(shuffled, lengths, 8) / 3
    sampler.set_epoch(1)
    again = list(sampler)
    assert again != order and sorted(again) == list(range(len(lengths)))


def test_the_short_batch_comes_last_so_every_loader_batch_is_one_length_group():
    """One sample more than a multiple of the batch: the one short batch, shuffled into the middle,
    shifted every later batch of the loader across two length groups."""
    lengths = list(range(1001))  # all different: each batch of the sorted order is a fixed set
    for seed in range(3):
        order = list(LengthGroupedSampler(lengths, batch_size=8, seed=seed, group_batches=1000))
        ranked = sorted(range(1001), key=lengths.__getitem__, reverse=True)
        groups = {frozenset(ranked[i : i + 8]) for i in range(0, 1001, 8)}
        loaded = [frozenset(order[i : i + 8]) for i in range(0, 1001, 8)]
        assert all(batch in groups for batch in loaded) and len(loaded[-1]) == 1


def test_fewer_samples_than_processes_give_every_process_a_batch():
    """One sample on four processes: two processes had no index, and would wait for the others."""
    for size, processes in [(1, 4), (3, 8)]:
        shares = [
            list(LengthGroupedSampler([5] * size, batch_size=2, num_replicas=processes, rank=rank))
            for rank in range(processes)
        ]
        assert [len(share) for share in shares] == [1] * processes


def test_processes_share_an_epoch_evenly():
    lengths = _lengths()
    ranks = [list(LengthGroupedSampler(lengths, batch_size=4, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 102  # 203 padded to 204
    assert set(ranks[0]) | set(ranks[1]) == set(range(len(lengths)))
    assert len(ranks[0] + ranks[1]) == 204


def test_target_lengths_count_structured_targets_without_images(processor):
    box = Sample(
        "a", "x.png", "", "", "t", task="<OD>", reference={"boxes": [[1, 2, 30, 40]] * 3, "labels": ["cat"] * 3}
    )
    caption = Sample("b", "x.png", "<CAPTION>", "a red circle", "t", task="<CAPTION>")
    lengths = target_lengths([box, caption], processor.tokenizer, limit=256)
    assert lengths[0] > 3 * 4 and lengths[1] < 10
    assert target_lengths([box], processor.tokenizer, limit=5) == [5]


def test_datamodule_groups_by_length_on_request(processor, tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, data={"group_by_length": True}))
    datamodule = Florence2DataModule(recipe.data, processor)
    datamodule.setup("fit")
    assert isinstance(datamodule.train_dataloader().sampler.inner, LengthGroupedSampler)


def _epochs(samplers: list, epochs: int = 2) -> list[list[list[int]]]:
    """Each epoch's indices, per process."""
    orders = []
    for epoch in range(epochs):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        orders.append([list(sampler) for sampler in samplers])
    return orders


def test_stable_shares_keep_each_process_on_its_samples_in_a_new_order():
    first, second = _epochs([StableShareSampler(203, num_replicas=3, rank=r, seed=5) for r in range(3)])
    for rank in range(3):
        assert len(first[rank]) == 68  # 203 padded to 204
        assert sorted(first[rank]) == sorted(second[rank]) and first[rank] != second[rank]
    assert set().union(*first) == set(range(203))
    plain = _epochs([LengthGroupedSampler(_lengths(), 4, num_replicas=3, rank=0, seed=5)])
    assert set(plain[0][0]) != set(plain[1][0]), "without stable shares a process's samples change"


def test_fewer_samples_than_processes_still_give_every_process_a_share():
    shares = [share_of(2, num_replicas=5, rank=r, seed=0).tolist() for r in range(5)]
    assert all(len(share) == 1 for share in shares) and {i for share in shares for i in share} == {0, 1}


def test_grouped_stable_shares_keep_their_samples_and_step_at_similar_lengths():
    lengths = _lengths()
    samplers = [LengthGroupedSampler(lengths, 4, num_replicas=2, rank=r, seed=3, stable_shares=True) for r in (0, 1)]
    first, second = _epochs(samplers)
    for rank in (0, 1):
        assert sorted(first[rank]) == sorted(second[rank]) and first[rank] != second[rank]
        shuffled = random.Random(rank).sample(first[rank], len(first[rank]))
        assert _padding(first[rank], lengths, 4) < _padding(shuffled, lengths, 4) / 3
    assert set(first[0]) | set(first[1]) == set(range(len(lengths)))
    longest = [[max(lengths[i] for i in order[k : k + 4]) for k in range(0, len(order), 4)] for order in first]
    assert torch.corrcoef(torch.tensor(longest, dtype=torch.float))[0, 1] > 0.8  # batches that step together


def test_weighted_stable_shares_draw_from_their_share_only():
    weights = torch.rand(50, generator=torch.Generator().manual_seed(0)).double()
    samplers = [WeightedEpochSampler(weights, seed=1, num_replicas=2, rank=r, stable_shares=True) for r in (0, 1)]
    for epoch in _epochs(samplers, epochs=3):
        for sampler, drawn in zip(samplers, epoch):
            assert len(drawn) == 25 and set(drawn) <= set(sampler.share.tolist())
