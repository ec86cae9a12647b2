"""The export folder's files as peft and transformers write them, nothing asked of the Hub."""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import peft.peft_model
import peft.utils.save_and_load
import pytest
import transformers.modeling_utils
from helpers import tiny_recipe
from safetensors import SafetensorError

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


@pytest.mark.parametrize(
    "kind, writer",
    [("adapter", peft.peft_model), ("model", transformers.modeling_utils)],
    ids=["adapter", "model"],
)
def test_a_full_disk_met_by_safetensors_is_the_oserror_it_reports(
    tmp_path, tiny_model, processor, monkeypatch, kind, writer
):
    """safetensors reports a full disk as a SafetensorError, no OSError: the command line's handler of
    full disks missed it and showed a traceback. The export stays atomic: no folder, whole or half."""

    def no_space(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora" if kind == "adapter" else "full"}))
    model = apply_adaptation(tiny_model, recipe.adaptation, recipe.lora)
    facts = gather_facts(recipe, tmp_path, kind)  # saves the tiny base model: before the disk is full
    target = tmp_path / "export"
    monkeypatch.setattr(writer, "safe_save_file", no_space)
    with pytest.raises(OSError) as raised:
        export_model(model, processor, recipe, target, facts)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert not [p.name for p in tmp_path.iterdir() if "export" in p.name]  # nor its staging folder
