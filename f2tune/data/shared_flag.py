"""A yes/no that the training process sets and its loader workers read while they run."""

from __future__ import annotations

import torch


class SharedFlag:
    """One boolean in shared memory. Persistent loader workers are copies of the training process's
    loader made when they started: an attribute set later never reaches them, while a shared-memory
    tensor is the same memory in every process, forked or spawned (torch passes it by handle), so a
    worker sees a change at its next batch. Starts false."""

    def __init__(self) -> None:
        self._cell = torch.zeros(1, dtype=torch.bool).share_memory_()

    def set(self, value: bool) -> None:
        self._cell.fill_(value)

    def __bool__(self) -> bool:
        return bool(self._cell[0])
