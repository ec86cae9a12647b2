"""Crash-safe checkpoint writing and the resumable training sampler."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from f2tune.data.resume import ResumableSampler, WeightedEpochSampler
from f2tune.train import checkpointing
from f2tune.train.checkpointing import AtomicCheckpointIO


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 3, "w": torch.ones(4)}, path)

    def crash_halfway(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpointing.torch, "save", crash_halfway)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 6, "w": torch.zeros(4)}, path)
    monkeypatch.undo()

    kept = io.load_checkpoint(path)
    assert kept["global_step"] == 3 and torch.equal(kept["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"], "the partial temporary file must be removed"


def test_resumed_sampler_skips_what_was_trained_then_runs_full_epochs():
    sampler = ResumableSampler(DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=3))
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    assert sorted(epoch2) == list(range(10))

    fresh = ResumableSampler(DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=3))
    fresh.resume(epoch=2, consumed=4)
    fresh.set_epoch(2)  # Lightning sets the epoch again after loading the loader's state
    assert list(fresh) == epoch2[4:]
    assert list(fresh) == epoch2, "the skip applies once"

    finished = ResumableSampler(DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=3))
    finished.resume(epoch=2, consumed=10)
    sampler.set_epoch(3)
    assert finished.epoch == 3 and list(finished) == list(sampler)


def test_weighted_sampler_is_a_function_of_the_epoch_and_shards_across_ranks():
    weights = torch.tensor([3.0] * 4 + [1.0] * 12, dtype=torch.double)
    whole = WeightedEpochSampler(weights, seed=1)
    whole.set_epoch(5)
    drawn = list(whole)
    assert len(drawn) == 16 and drawn == list(whole)
    ranks = [WeightedEpochSampler(weights, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for rank in ranks:
        rank.set_epoch(5)
    assert list(ranks[0]) == drawn[0::2] and list(ranks[1]) == drawn[1::2]
