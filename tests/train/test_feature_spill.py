"""Image features spilled to disk come back exactly, within the disk budget, in a file nobody sees."""

from __future__ import annotations

import pytest
import torch

from f2tune.train.feature_spill import FeatureSpill


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_features_come_back_bit_for_bit(tmp_path, dtype):
    spill = FeatureSpill(tmp_path / "cache", max_bytes=10**6)
    tensors = {("id", str(n), "w"): torch.randn(5, 7).to(dtype) for n in range(3)}
    for key, tensor in tensors.items():
        assert spill.put(key, tensor.t())  # a non-contiguous view is written as its values
    for key, tensor in tensors.items():
        assert key in spill and torch.equal(spill.get(key), tensor.t())
    assert list((tmp_path / "cache").iterdir()) == []  # anonymous: nothing to clean up, whatever happens


def test_the_budget_holds_and_clearing_empties(tmp_path):
    spill = FeatureSpill(tmp_path, max_bytes=2 * 35 * 4)
    assert spill.put(("a", "", ""), torch.ones(5, 7)) and spill.put(("b", "", ""), torch.ones(5, 7))
    assert not spill.put(("c", "", ""), torch.ones(5, 7)) and ("c", "", "") not in spill
    spill.clear()
    assert ("a", "", "") not in spill and spill.bytes == 0
    assert spill.put(("c", "", ""), torch.zeros(5, 7)) and torch.equal(spill.get(("c", "", "")), torch.zeros(5, 7))
