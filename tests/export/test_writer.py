"""The export folder's files as peft and transformers write them, nothing asked of the Hub."""

from __future__ import annotations

import warnings
from pathlib import Path

import peft.utils.save_and_load
from helpers import tiny_recipe

from f2tune.export.atomic import OUTPUT_MARKER
from f2tune.export.facts import gather_facts
from f2tune.export.writer import export_model
from f2tune.model.adapt import apply_adaptation
from f2tune.recipe import validate_recipe


def test_an_adapter_of_a_hub_base_is_written_without_asking_the_hub(tmp_path, tiny_model, monkeypatch):
    """peft's `save_embedding_layers="auto"` asked the Hub for the base's config.json (and then
    downloaded it) to see whether the vocabulary was resized, which f2tune never does; offline it
    warned "Could not find a config file in florence-community/Florence-2-base" at every export."""
    asked = []
    monkeypatch.setattr(peft.utils.save_and_load, "check_file_exists_on_hf_hub", lambda *a, **k: asked.append(a))
    raw = tiny_recipe(tmp_path, adaptation={"method": "lora"})
    recipe = validate_recipe(raw | {"model": raw["model"] | {"name_or_path": "florence-community/Florence-2-base"}})
    adapter = apply_adaptation(tiny_model, recipe.adaptation, recipe.lora)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        export_model(adapter, None, recipe, tmp_path / "export", gather_facts(recipe, tmp_path, "adapter"))
    assert not asked and not [str(w.message) for w in said]
    written = {p.name for p in Path(tmp_path / "export").iterdir()}
    assert written == {"README.md", "adapter_config.json", "adapter_model.safetensors", OUTPUT_MARKER}
