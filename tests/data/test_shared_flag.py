"""A flag set in the training process reaches loader workers that are already running."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from f2tune.data.shared_flag import SharedFlag


class ReadFlag:
    """A collate function that reports the flag as the worker sees it (module level: spawn pickles it)."""

    def __init__(self, flag: SharedFlag) -> None:
        self.flag = flag

    def __call__(self, items: list[int]) -> bool:
        return bool(self.flag)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_persistent_workers_see_the_flag_change_between_epochs(start):
    flag = SharedFlag()
    loader = DataLoader(
        range(4),
        batch_size=2,
        collate_fn=ReadFlag(flag),
        num_workers=1,
        persistent_workers=True,
        multiprocessing_context=start,
    )
    assert list(loader) == [False, False]
    flag.set(True)
    assert list(loader) == [True, True]
    flag.set(False)
    assert list(loader) == [False, False]
