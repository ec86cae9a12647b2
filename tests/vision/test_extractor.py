"""The DaViT feature extractor: parity with the vision tower, any input size, frozen stages."""

from __future__ import annotations

import pytest
import torch

from f2tune.vision.extractor import DaViTFeatureExtractor, davit_config


def _extractor(model, **kwargs) -> DaViTFeatureExtractor:
    extractor = DaViTFeatureExtractor(model.config, **kwargs)
    extractor.davit.load_state_dict(model.model.vision_tower.state_dict())
    return extractor


def test_last_stage_equals_vision_tower(tiny_model) -> None:
    tiny_model.eval()
    extractor = _extractor(tiny_model).eval()
    pixels = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = tiny_model.model.vision_tower(pixels).last_hidden_state
        maps = extractor(pixels)
    torch.testing.assert_close(maps[-1], expected)
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 24, 24), (32, 12, 12), (48, 6, 6), (64, 3, 3)]
    assert [(f.channels, f.stride) for f in extractor.feature_info] == [(16, 4), (32, 8), (48, 16), (64, 32)]


def test_odd_input_sizes_are_padded_and_cropped(tiny_model) -> None:
    extractor = _extractor(tiny_model, out_indices=(1, 3))
    maps = extractor(torch.randn(1, 3, 100, 70))
    assert [tuple(m.shape) for m in maps] == [(1, 32, 13, 9), (1, 64, 4, 3)]
    assert [f.stride for f in extractor.feature_info] == [8, 32]
    assert _extractor(tiny_model, out_indices=(1, -1)).out_indices == (1, 3)  # counted from the end, as timm does


def test_frozen_stages_do_not_change(tiny_model) -> None:
    extractor = _extractor(tiny_model, frozen_stages=2, drop_path_rate=0.1, gradient_checkpointing=True).train()
    frozen = {k: v.clone() for k, v in extractor.davit.state_dict().items() if k.split(".")[1] in {"0", "1"}}
    trainable = [p for p in extractor.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    sum(m.square().mean() for m in extractor(torch.randn(2, 3, 64, 64))).backward()
    optimizer.step()
    assert not extractor.davit.convs[0].training and not extractor.davit.blocks[1].training
    assert extractor.davit.blocks[2].training
    for key, value in extractor.davit.state_dict().items():
        if key in frozen:
            torch.testing.assert_close(value, frozen[key])
    assert not torch.equal(extractor.davit.convs[3].conv.weight, tiny_model.model.vision_tower.convs[3].conv.weight)


def test_every_trainable_weight_gets_a_gradient_when_later_stages_are_left_out(tiny_model) -> None:
    """Stages after the last output never run; trainable, they got no gradient, and DDP without
    find_unused_parameters (detectron2's and mmengine's default) stopped at the second step."""
    extractor = _extractor(tiny_model, out_indices=(0, 1, 2)).train()
    sum(m.square().mean() for m in extractor(torch.randn(2, 3, 64, 64))).backward()
    assert [n for n, p in extractor.named_parameters() if p.requires_grad and p.grad is None] == []
    assert not any(p.requires_grad for p in extractor.davit.blocks[3].parameters())


@pytest.mark.parametrize(
    ("size", "channels", "heads", "projection"),
    [("base", [128, 256, 512, 1024], [4, 8, 16, 32], 768), ("large", [256, 512, 1024, 2048], [8, 16, 32, 64], 1024)],
)
def test_release_sizes(size: str, channels: list[int], heads: list[int], projection: int) -> None:
    """The vision configs published with Florence-2-base and -large (their config.json files)."""
    config = davit_config(size)
    assert config.embed_dim == channels and config.depths == [1, 1, 9, 1] and config.window_size == 12
    assert config.num_heads == heads and config.num_groups == heads and config.projection_dim == projection


def test_bad_arguments(tiny_model) -> None:
    with pytest.raises(ValueError, match="out_indices"):
        DaViTFeatureExtractor(tiny_model.config, out_indices=(4,))
    with pytest.raises(ValueError, match="frozen_stages"):
        DaViTFeatureExtractor(tiny_model.config, frozen_stages=5)
