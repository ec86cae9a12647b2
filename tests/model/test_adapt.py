"""Adaptation: LoRA presets hit exactly the modules they name; frozen weights stay frozen."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from f2tune.config import AdaptationConfig, FreezeConfig, LoraSettings
from f2tune.data.collate import Florence2Collator
from f2tune.errors import RecipeError
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.model.adapt import apply_adaptation, freeze_parts, lora_targets
from f2tune.testing.shapes import shape_samples

LANGUAGE_LEAVES = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
VISION_LEAVES = {"qkv", "proj", "fc1", "fc2"}


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def expected(model: nn.Module, preset: str) -> set[str]:
    """The modules each preset promises, derived from the structure rather than the regexes."""
    language = {
        n
        for n in linear_names(model)
        if ".language_model." in n and ".layers." in n and n.rsplit(".", 1)[1] in LANGUAGE_LEAVES
    }
    vision = {n for n in linear_names(model) if ".vision_tower.blocks." in n and n.rsplit(".", 1)[1] in VISION_LEAVES}
    projector = {n for n in linear_names(model) if n.endswith("multi_modal_projector.image_projection")}
    return {"language": language, "vision": vision, "all": language | vision | projector}[preset]


@pytest.mark.parametrize("preset", ["language", "vision", "all"])
def test_each_preset_hits_the_modules_it_names_and_no_others(tiny_model, preset):
    hit = set(lora_targets(tiny_model, preset))
    assert hit == expected(tiny_model, preset)
    assert len(hit) > 0 and "lm_head" not in hit


def test_presets_apply_through_peft(tiny_model):
    promised = expected(tiny_model, "vision")
    model = apply_adaptation(tiny_model, AdaptationConfig(method="lora"), LoraSettings(target="vision", r=4))
    wrapped = {
        n.removeprefix("base_model.model.").removesuffix(".lora_A.default")
        for n, _ in model.named_modules()
        if n.endswith("lora_A.default")
    }
    assert wrapped == promised


def test_custom_regex_and_bad_targets(tiny_model):
    assert lora_targets(tiny_model, r".*decoder\.layers\.0\.fc1") == ["model.language_model.decoder.layers.0.fc1"]
    with pytest.raises(RecipeError, match="matches no module"):
        lora_targets(tiny_model, r"Conv2d|linear")
    # peft refused these with a traceback (`Target module LayerNorm(...) is not supported`)
    with pytest.raises(RecipeError, match=r"matches modules LoRA cannot adapt: .*layer_norm \(LayerNorm\)"):
        lora_targets(tiny_model, r".*layer_norm")


@pytest.mark.parametrize("tied", ["lm_head", r"model\.language_model\.shared"])
def test_targets_with_a_tied_weight_are_refused(tiny_model, tied):
    """Merging their update wrote it into the one token table: the merged model's embeddings changed too."""
    with pytest.raises(RecipeError, match=r"matches modules with a tied weight: .*shares its weight with"):
        lora_targets(tiny_model, rf".*decoder\.layers\.0\.fc1|{tied}")


def test_grouped_convolutions_are_refused_before_peft(tiny_model):
    """peft refused the DaViT's depthwise convolutions from inside get_peft_model, with a traceback."""
    with pytest.raises(RecipeError, match=r"grouped \(depthwise\) convolutions: .*conv1 \(groups=16\)"):
        lora_targets(tiny_model, r".*blocks\.0\.0\.spatial_block\.conv1")
    assert lora_targets(tiny_model, r".*vision_tower\.convs\.1\.conv") == ["model.vision_tower.convs.1.conv"]


def one_batch(processor) -> dict:
    samples = shape_samples(4, seed=11)
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in samples]
    return Florence2Collator(processor, 16)(items)


def train_steps(model: nn.Module, batch: dict, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_frozen_parts_are_unchanged_after_optimizer_steps(tiny_model, processor):
    freeze = FreezeConfig(vision_stages=[0, 1], projector=True, language_encoder=True)
    model = apply_adaptation(tiny_model, AdaptationConfig(method="full", freeze=freeze), LoraSettings())
    before = snapshot(model)
    train_steps(model, one_batch(processor))
    frozen = re.compile(r"vision_tower\.(convs|blocks)\.[01]\.|multi_modal_projector\.|language_model\.encoder\.")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert not {n for n in changed if frozen.search(n)}
    assert any("vision_tower.blocks.2" in n for n in changed) and any("decoder" in n for n in changed)
    assert all(not p.requires_grad for n, p in model.named_parameters() if frozen.search(n))


def test_whole_vision_tower_freeze(tiny_model):
    frozen = freeze_parts(tiny_model, FreezeConfig(vision_tower=True))
    vision = sum(p.numel() for n, p in tiny_model.named_parameters() if "vision_tower" in n)
    assert frozen == vision > 0


def test_with_lora_only_lora_weights_change(tiny_model, processor):
    model = apply_adaptation(tiny_model, AdaptationConfig(method="lora"), LoraSettings(target="all", r=4))
    # LoRA B starts at zero, so one step moves only B; a few steps move A as well.
    before = snapshot(model)
    train_steps(model, one_batch(processor))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


def test_freezing_applies_to_lora_weights_too(tiny_model):
    freeze = FreezeConfig(vision_tower=True)
    model = apply_adaptation(
        tiny_model, AdaptationConfig(method="lora", freeze=freeze), LoraSettings(target="all", r=4)
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not [n for n in trainable if "vision_tower" in n]


def test_dora_adds_magnitude_vectors(tiny_model):
    model = apply_adaptation(
        tiny_model, AdaptationConfig(method="lora"), LoraSettings(target="language", r=4, use_dora=True)
    )
    magnitudes = [n for n, p in model.named_parameters() if "lora_magnitude_vector" in n and p.requires_grad]
    assert len(magnitudes) == len(expected_after_wrap(model))


@pytest.mark.parametrize(("rslora", "scaling"), [(False, 32 / 16), (True, 32 / 16**0.5)])
def test_rank_stabilized_lora_scales_by_the_root_of_r(tiny_model, rslora, scaling):
    settings = LoraSettings(target="language", r=16, alpha=32, use_rslora=rslora)
    model = apply_adaptation(tiny_model, AdaptationConfig(method="lora"), settings)
    scalings = [m.scaling["default"] for m in model.modules() if hasattr(m, "lora_A") and "default" in m.scaling]
    assert scalings and scalings == pytest.approx([scaling] * len(scalings))


def expected_after_wrap(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n.endswith("lora_A.default")]
