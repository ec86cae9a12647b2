"""Model loading: a local folder (as a Hub id would be) with dtype and attention options, in train mode."""

from __future__ import annotations

import pytest
import torch

from f2tune.config import TINY_MODEL, ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.model.loading import load_model, load_processor


def test_local_folder_loads_in_train_mode_with_the_requested_dtype(tiny_dir):
    model = load_model(ModelConfig(name_or_path=str(tiny_dir), dtype="bfloat16", attn_implementation="eager"))
    assert model.training and all(m.training for m in model.modules())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.text_config._attn_implementation == "eager"
    processor = load_processor(ModelConfig(name_or_path=str(tiny_dir)))
    assert processor.tokenizer.convert_tokens_to_ids("<loc_999>") != processor.tokenizer.unk_token_id


def test_remote_code_stays_off_unless_asked(tiny_dir, monkeypatch):
    seen = {}
    from transformers import AutoModelForImageTextToText

    original = AutoModelForImageTextToText.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen["trust_remote_code"] = kwargs.get("trust_remote_code")
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", classmethod(spy))
    load_model(ModelConfig(name_or_path=str(tiny_dir)))
    assert seen["trust_remote_code"] is False


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match=f"no such folder: {tmp_path / 'absent'}"):
        load_model(ModelConfig(name_or_path=str(tmp_path / "absent")))


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
