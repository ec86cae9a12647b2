"""Crash-safe checkpoint writing and the resumable training sampler."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_recipe
from torch.utils.data import DistributedSampler

from f2tune.data import resume
from f2tune.data.resume import ResumableLoader, ResumableSampler, WeightedEpochSampler
from f2tune.data.sampler import StableShareSampler
from f2tune.recipe import validate_recipe
from f2tune.train import checkpointing
from f2tune.train.checkpointing import AtomicCheckpointIO
from f2tune.train.run import fit


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


def loaders(processes: int, inner=DistributedSampler) -> list[ResumableLoader]:
    """One loader per process of a run, each over its rank's share of 48 samples, 2 per batch."""
    return [
        ResumableLoader(
            range(48),
            batch_size=2,
            sampler=ResumableSampler(inner(range(48), num_replicas=processes, rank=rank, shuffle=True, seed=7)),
        )
        for rank in range(processes)
    ]


@pytest.mark.parametrize(("saved_on", "resumed_on"), [(4, 2), (2, 4), (4, 3)])
def test_a_run_resumed_on_another_number_of_processes_trains_the_rest_of_the_epoch(saved_on, resumed_on):
    """Saved after 3 batches of epoch 1 on `saved_on` processes, each of `resumed_on` processes skips
    its share of the 3 x 2 x `saved_on` samples trained: together they train exactly the others."""
    before = loaders(saved_on)
    for loader in before:
        loader.sampler.set_epoch(1)
    trained = {index for loader in before for index in list(loader.sampler)[:6]}
    state = ResumableLoader.state_dict(before[0]) | {"epoch": 1, "samples": 6}  # what rank 0 saves at batch 3
    assert state["processes"] == saved_on

    rest = resume_all(loaders(resumed_on), state)
    assert set(rest) == set(range(48)) - trained and len(rest) == 48 - len(trained)


def resume_all(group: list[ResumableLoader], state: dict) -> list[int]:
    """The samples left of epoch 1 to the loaders of `group` (one per process), resumed from `state`."""
    for loader in group:
        loader.load_state_dict(state)
        loader.sampler.set_epoch(1)
    return [index for loader in group for index in loader.sampler]


def test_samplers_that_order_each_share_say_the_resumed_epoch_is_approximate(monkeypatch):
    def share_sampler(data, num_replicas, rank, shuffle, seed):
        return StableShareSampler(len(data), num_replicas=num_replicas, rank=rank, seed=seed)

    warned: list[str] = []
    monkeypatch.setattr(resume, "warn", warned.append)
    loaders(2, share_sampler)[0].load_state_dict({"epoch": 1, "samples": 6, "processes": 4})
    assert len(warned) == 1 and warned[0].startswith("resumed on 2 training processes, saved on 4: the rest of epoch 1")
    loaders(2)[0].load_state_dict({"epoch": 1, "samples": 6, "processes": 4})
    assert len(warned) == 1  # plain shuffling resumes exactly: nothing to say


def test_the_position_saved_after_a_resume_on_other_processes_counts_the_samples_trained():
    """The epoch's batch count (Lightning's, restored with the checkpoint) includes the batches of
    before the resume: times the new batch share, it put the next checkpoint at the wrong place, and
    a second resume trained some samples twice and others never."""
    counted = {"batches": 0}
    before = loaders(4)
    for loader in before:
        loader.sampler.set_epoch(1)
    state = {"epoch": 1, "samples": 6, "processes": 4}  # 3 batches of 2 on each of 4 processes
    trained = {index for loader in before for index in list(loader.sampler)[:6]}
    after = loaders(2)
    counted["batches"] = 3  # restored before the loader's state
    for loader in after:
        loader.consumed_batches = lambda: counted["batches"]
        loader.load_state_dict(state)
        loader.sampler.set_epoch(1)
    trained |= {index for loader in after for index in list(loader.sampler)[:4]}  # 2 more batches each
    counted["batches"] = 5
    saved = after[0].state_dict()
    assert saved == {"epoch": 1, "samples": 12 + 4, "processes": 2}
    rest = resume_all(loaders(2), saved)
    assert set(rest) == set(range(48)) - trained and len(rest) == 48 - len(trained)


def test_last_checkpoint_is_not_written_inside_an_accumulated_step(tmp_path):
    """A validation after the first of two accumulated batches wrote last.ckpt there: the weights
    of the step before, with a data position past a batch whose gradient was not applied."""
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 2, "val_check_interval": 3}, eval={"metric": "none"})
    raw["optim"]["accumulate"] = 2
    seen: list[bool] = []

    class LastCheckpointBefore(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt").is_file())

    result = fit(validate_recipe(raw), extra_callbacks=[LastCheckpointBefore()])
    assert seen == [False, False, False, False]  # the validation after batch 3 is inside step 2
    assert torch.load(result.last_checkpoint, weights_only=False)["global_step"] == 2
