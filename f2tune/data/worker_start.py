"""What every loader worker process does first: leave stop signals to the training process.

Ctrl-C reaches every process of the terminal's process group, and a scheduler's SIGTERM (SLURM's
`scancel`, a time limit) every process of the job: loader workers included. A worker that dies of
either fails the training step in progress ("DataLoader worker ... is killed by signal") before the
training process can stop at the step's end and save (`f2tune.train.stopping`). So workers ignore
both; the training process ends them as it ends its loaders (through their queues, and a worker
also exits once it sees its parent gone).
"""

from __future__ import annotations

import os
import signal

from lightning.fabric.utilities.seed import pl_worker_init_function


class WorkerStart:
    """The loaders' `worker_init_fn`. Lightning adds its own (`pl_worker_init_function`, which
    seeds each worker's generators by rank and worker id) only to loaders without one, so this
    calls it where `seed_everything(workers=True)` asked for it."""

    def __init__(self, rank: int | None) -> None:
        self.rank = rank

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if int(os.environ.get("PL_SEED_WORKERS", 0)):
            pl_worker_init_function(worker_id, rank=self.rank)
