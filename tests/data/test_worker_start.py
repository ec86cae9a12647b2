"""Loader workers leave stop signals to the training process and keep Lightning's seeding."""

from __future__ import annotations

import os
import signal

from torch.utils.data import DataLoader, Dataset

from f2tune.data import worker_start
from f2tune.data.worker_start import WorkerStart


class Probe(Dataset):
    """One item: what a worker process sees once its `worker_init_fn` has run."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[bool, bool, str | None]:
        ignored = (
            signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
            signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
        )
        return (*ignored, os.environ.get("SEEDED_AS"))


def seeding_spy(worker_id: int, rank: int | None = None) -> None:
    os.environ["SEEDED_AS"] = f"worker {worker_id} of rank {rank}"


def test_workers_ignore_stop_signals_and_are_seeded_as_lightning_asks(monkeypatch) -> None:
    monkeypatch.setattr(worker_start, "pl_worker_init_function", seeding_spy)  # forked: the worker has it too
    monkeypatch.setenv("PL_SEED_WORKERS", "1")  # what seed_everything(workers=True) sets
    loader = DataLoader(
        Probe(), batch_size=None, num_workers=1, worker_init_fn=WorkerStart(rank=3), multiprocessing_context="fork"
    )
    assert list(loader) == [[True, True, "worker 0 of rank 3"]]  # lists: how the loader hands tuples over
    monkeypatch.setenv("PL_SEED_WORKERS", "0")
    assert list(loader) == [[True, True, None]]
