"""`model.attn_implementation: auto`: which kernels it picks, and that switching them keeps the loss."""

from __future__ import annotations

import pytest
import torch

from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.model.attention import attention_for, use_attention
from f2tune.testing.shapes import shape_samples
from f2tune.train.loss import target_loss


@pytest.mark.parametrize(
    ("device", "in_bf16", "expected"),
    [("cpu", True, "eager"), ("cpu", False, "sdpa"), ("cuda", True, "sdpa"), ("cuda", False, "sdpa")],
)
def test_auto_is_eager_only_on_a_cpu_in_bf16(device, in_bf16, expected):
    assert attention_for(device, in_bf16) == expected


def test_switching_reaches_both_towers_and_keeps_the_loss(tiny_model, processor):
    dataset = SampleDataset(shape_samples(4, seed=5))
    batch = Florence2Collator(processor, 16)([dataset[i] for i in range(4)])
    tiny_model.eval()

    def loss() -> torch.Tensor:
        with torch.no_grad():
            return target_loss(
                tiny_model, batch["labels"], batch["input_ids"], batch["attention_mask"], batch["pixel_values"]
            )

    with_sdpa = loss()
    assert use_attention(tiny_model, "eager")
    configs = (tiny_model.config, tiny_model.config.vision_config, tiny_model.config.text_config)
    assert [c._attn_implementation for c in configs] == ["eager"] * 3
    assert not use_attention(tiny_model, "eager")
    torch.testing.assert_close(loss(), with_sdpa, rtol=1e-5, atol=1e-6)
