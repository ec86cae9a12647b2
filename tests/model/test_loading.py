"""Model loading: a local folder (as a Hub id would be) with dtype and attention options, in train mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from f2tune.config import TINY_MODEL, ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.model.loading import attach_adapter, base_model_revision, load_model, load_processor


def test_local_folder_loads_in_train_mode_with_the_requested_dtype(tiny_dir):
    model = load_model(ModelConfig(name_or_path=str(tiny_dir), dtype="bfloat16", attn_implementation="eager"))
    assert model.training and all(m.training for m in model.modules())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.text_config._attn_implementation == "eager"
    processor = load_processor(ModelConfig(name_or_path=str(tiny_dir)))
    assert processor.tokenizer.convert_tokens_to_ids("<loc_999>") != processor.tokenizer.unk_token_id


@pytest.fixture
def load_kwargs(monkeypatch) -> dict:
    """The keyword arguments of the latest `AutoModelForImageTextToText.from_pretrained` call."""
    from transformers import AutoModelForImageTextToText

    seen: dict = {}
    original = AutoModelForImageTextToText.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", classmethod(spy))
    return seen


def test_remote_code_stays_off_unless_asked(tiny_dir, load_kwargs):
    load_model(ModelConfig(name_or_path=str(tiny_dir)))
    assert load_kwargs["trust_remote_code"] is False


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match=f"no such folder: {tmp_path / 'absent'}"):
        load_model(ModelConfig(name_or_path=str(tmp_path / "absent")))


def test_a_file_given_as_the_model_says_what_it_is(tmp_path):
    """The usual one is a training checkpoint, which `f2tune export` turns into a model folder."""
    checkpoint, other = tmp_path / "last.ckpt", tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"")
    other.write_bytes(b"")
    with pytest.raises(
        ModelLoadError,
        match=rf"^model.name_or_path: {checkpoint} is a training checkpoint, .*f2tune export {checkpoint} --out DIR",
    ):
        load_model(ModelConfig(name_or_path=str(checkpoint)))
    with pytest.raises(ModelLoadError, match=rf"^model.adapter: {other} is a file, not a model folder"):
        config = ModelConfig(name_or_path=TINY_MODEL, adapter=str(other))
        attach_adapter(load_model(config), config, trainable=False)


def test_unreachable_hub_id_is_one_message_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="(?s)cannot load model.name_or_path='nobody/no-such-model'.*local folder"):
        load_processor(ModelConfig(name_or_path="nobody/no-such-model"))


def test_pickle_weights_load_only_when_allowed(tiny_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    state = AutoModelForImageTextToText.from_pretrained(tiny_dir).state_dict()
    torch.save(state, pickled / "pytorch_model.bin")  # transformers 5 itself writes safetensors only
    for name in ("config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((tiny_dir / name).read_bytes())
    assert (pickled / "pytorch_model.bin").is_file() and not (pickled / "model.safetensors").exists()
    with pytest.raises(ModelLoadError, match="cannot load model.name_or_path="):
        load_model(ModelConfig(name_or_path=str(pickled)))
    assert load_model(ModelConfig(name_or_path=str(pickled), allow_pickle=True)).training


def test_the_built_in_tiny_model_takes_the_asked_attention():
    model = load_model(ModelConfig(name_or_path=TINY_MODEL, attn_implementation="eager"))
    assert model.config.vision_config._attn_implementation == "eager"
    assert model.config.text_config._attn_implementation == "eager"
    assert load_model(ModelConfig(name_or_path=TINY_MODEL)).config.text_config._attn_implementation == "sdpa"


@pytest.fixture
def tiny_copy(tiny_dir, tmp_path) -> Path:
    """A copy of the tiny model folder whose files a test may change."""
    return Path(shutil.copytree(tiny_dir, tmp_path / "copy"))


def test_the_remote_code_layout_is_refused_before_any_weights_load(tiny_copy):
    """microsoft/Florence-2-*'s config: native transformers would read it and find none of its weights."""
    config = json.loads((tiny_copy / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_florence2.Florence2Config"}
    config["vision_config"] = {"model_type": "davit", "dim_embed": [16, 32, 48, 64]}
    (tiny_copy / "config.json").write_text(json.dumps(config))
    (tiny_copy / "model.safetensors").unlink()
    for load in (load_model, load_processor):
        with pytest.raises(ModelLoadError, match=r"original remote-code layout.*florence-community/Florence-2-base"):
            load(ModelConfig(name_or_path=str(tiny_copy)))


def test_a_native_checkpoint_that_keeps_an_auto_map_loads(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_florence2.Florence2Config"}
    (tiny_copy / "config.json").write_text(json.dumps(config))
    assert load_model(ModelConfig(name_or_path=str(tiny_copy))).training


def test_a_checkpoint_lacking_weights_is_refused_not_filled_with_random_values(tiny_copy):
    weights = load_file(tiny_copy / "model.safetensors")
    kept = {k: v for k, v in weights.items() if not k.startswith("model.multi_modal_projector.")}
    save_file(kept, tiny_copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ModelLoadError, match=r"weight\(s\) of the model are not in the checkpoint.*multi_modal_projector"
    ):
        load_model(ModelConfig(name_or_path=str(tiny_copy)))


def test_weights_of_another_size_are_one_message(tiny_copy):
    weights = load_file(tiny_copy / "model.safetensors")
    weights["model.multi_modal_projector.image_proj_norm.weight"] = torch.ones(7)
    save_file(weights, tiny_copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="some of its weights do not fit the model its config describes"):
        load_model(ModelConfig(name_or_path=str(tiny_copy)))


def test_a_base_named_by_an_adapter_loads_at_the_revision_the_adapter_records(tiny_dir, tmp_path, load_kwargs):
    """The base of `model.adapter` was loaded from its main branch whatever revision the adapter was
    trained on (f2tune's exports record it in adapter_config.json)."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "base_model_name_or_path": str(tiny_dir), "revision": "abc123"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    assert base_model_revision(ModelConfig(adapter=str(adapter))) == "abc123"
    assert base_model_revision(ModelConfig(adapter=str(adapter), revision="v2")) == "v2"  # the recipe's wins
    assert base_model_revision(ModelConfig(name_or_path=str(tiny_dir), adapter=str(adapter))) is None
    load_model(ModelConfig(adapter=str(adapter)))  # a local base: transformers reads the folder as it is
    assert load_kwargs["revision"] == "abc123"
