"""Regional torch.compile: every repeated block found (inside peft too), the same loss and gradients as
eager, parameter names unchanged, LoRA layers compiled with their blocks, and fsdp refused in the recipe.
Compilation uses the aot_eager backend (dynamo + autograd tracing, as with inductor, without minutes
of C++ code generation per test on a CPU)."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import tiny_recipe
from peft import LoraConfig, get_peft_model

from f2tune.data.collate import Florence2Collator
from f2tune.errors import RecipeError
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.model.compile import RECOMPILE_LIMIT, compile_blocks, language_layers, repeated_blocks, vision_blocks
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.testing.tiny import build_tiny_model
from f2tune.train import setup


def _batch(processor) -> dict:
    samples = shape_samples(2, seed=3)
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in samples]
    return Florence2Collator(processor, max_target_tokens=16)(items)


def test_blocks_are_found_inside_peft(processor) -> None:
    model = build_tiny_model(processor)
    assert len(repeated_blocks(model)) == 4 + 1 + 1  # DaViT blocks (1 per stage) + encoder + decoder layer
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    assert [id(b) for b in repeated_blocks(wrapped)] == [id(b) for b in repeated_blocks(model)]


def test_the_graph_limit_covers_every_stage_and_batch_size(processor) -> None:
    """dynamo keeps 8 graphs per function by default: the DaViT block's four stage widths, again
    for an epoch's smaller last batch, reached it in a tiny run's first steps (then ran eager).
    A higher limit the user set stays. (dynamo's own `patch` restores the setting: pytest 9.2's
    monkeypatch deletes it on undo, which hides it from dynamo's config for good.)"""
    with torch._dynamo.config.patch(recompile_limit=8):
        compile_blocks(build_tiny_model(processor), backend="eager")
        assert torch._dynamo.config.recompile_limit == RECOMPILE_LIMIT >= 4 * 2  # DaViT stages x batch sizes
    with torch._dynamo.config.patch(recompile_limit=100):
        compile_blocks(build_tiny_model(processor), backend="eager")
        assert torch._dynamo.config.recompile_limit == 100


@pytest.mark.slow
def test_compiled_blocks_match_eager(processor) -> None:
    batch = _batch(processor)
    inputs = {k: batch[k] for k in MODEL_INPUTS} | {"labels": batch["labels"]}
    eager, compiled = build_tiny_model(processor).eval(), build_tiny_model(processor).eval()
    names = list(dict(compiled.named_parameters()))
    assert compile_blocks(compiled, backend="aot_eager") == 6
    assert list(dict(compiled.named_parameters())) == names
    losses = [model(**inputs).loss for model in (eager, compiled)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    for loss in losses:
        loss.backward()
    key = "model.vision_tower.blocks.0.0.spatial_block.window_attn.qkv.weight"
    grads = [dict(model.named_parameters())[key].grad for model in (eager, compiled)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)


def compiled(blocks: list[torch.nn.Module]) -> list[bool]:
    return [block._compiled_call_impl is not None for block in blocks]


def test_lora_recipe_compiles_its_blocks_after_lora(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LoRA leaves the vision tower frozen, so the feature cache runs it once per image (in batches
    of whatever size the misses make): only the BART layers compile."""
    monkeypatch.setattr(setup, "compile_blocks", functools.partial(compile_blocks, backend="aot_eager"))
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, trainer={"compile": True}))
    model = setup.build_trainable_model(recipe)
    assert compiled(language_layers(model)) == [True, True] and compiled(vision_blocks(model)) == [False] * 4
    assert any("lora_A" in name for name, _ in language_layers(model)[-1].named_parameters())  # LoRA went in first
    for adaptation, cache in [({"method": "lora"}, "off"), ({"method": "full"}, "auto")]:  # the tower runs every step
        other = tiny_recipe(tmp_path, adaptation=adaptation, trainer={"compile": True, "cache_image_features": cache})
        assert all(compiled(repeated_blocks(setup.build_trainable_model(validate_recipe(other)))))


def test_compile_with_fsdp_is_refused(tmp_path) -> None:
    with pytest.raises(RecipeError, match="trainer.compile"):
        validate_recipe(tiny_recipe(tmp_path, trainer={"compile": True, "strategy": "fsdp"}))
