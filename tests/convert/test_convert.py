"""`f2tune convert`: a tiny native model written in the remote-code naming converts back exactly.

The remote-code checkpoint is made here from the tiny native model by the inverse of the rules
(written out separately below, so a wrong rule cannot cancel itself out), plus the keys the native
model has no place for (`final_logits_bias`, DaViT's `norms`).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
import transformers.modeling_utils
from peft import AutoPeftModel, LoraConfig, PeftModel, get_peft_model
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

from f2tune.cli import main
from f2tune.convert.checkpoint import convert, convert_adapter_state
from f2tune.convert.rules import RULES, ConvertError, convert_state_dict, match_rule
from f2tune.data.collate import Florence2Collator
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.model.adapt import LORA_PRESETS
from f2tune.testing.shapes import shape_samples

BLOCK = r"model\.vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial_block|channel_block)\."
NATIVE_TO_REMOTE = [
    (r"model\.language_model\.(.+)", r"language_model.model.\1"),
    (r"lm_head\.weight", "language_model.lm_head.weight"),
    (r"model\.vision_tower\.convs\.(\d+)\.conv\.(.+)", r"vision_tower.convs.\1.proj.\2"),
    (r"model\.vision_tower\.convs\.(\d+)\.norm\.(.+)", r"vision_tower.convs.\1.norm.\2"),
    (BLOCK + r"conv([12])\.(.+)", r"vision_tower.blocks.\1.\2.\3.conv\4.fn.dw.\5"),
    (BLOCK + r"norm1\.(.+)", None),  # spatial blocks norm window_attn, channel blocks channel_attn: below
    (BLOCK + r"(window_attn|channel_attn)\.(.+)", r"vision_tower.blocks.\1.\2.\3.\4.fn.\5"),
    (BLOCK + r"norm2\.(.+)", r"vision_tower.blocks.\1.\2.\3.ffn.norm.\4"),
    (BLOCK + r"ffn\.(.+)", r"vision_tower.blocks.\1.\2.\3.ffn.fn.net.\4"),
    (r"model\.multi_modal_projector\.image_projection\.weight", "image_projection"),
    (r"model\.multi_modal_projector\.image_proj_norm\.(.+)", r"image_proj_norm.\1"),
    (r"model\.multi_modal_projector\.image_position_embed\.(.+)", r"image_pos_embed.\1"),
    (r"model\.multi_modal_projector\.visual_temporal_embed\.(.+)", r"visual_temporal_embed.\1"),
]


def to_remote(key: str) -> str:
    for pattern, replacement in NATIVE_TO_REMOTE:
        match = re.fullmatch(pattern, key)
        if match and replacement is None:
            attn = "window_attn" if match[3] == "spatial_block" else "channel_attn"
            return f"vision_tower.blocks.{match[1]}.{match[2]}.{match[3]}.{attn}.norm.{match[4]}"
        if match:
            return re.sub(pattern, replacement, key)
    raise AssertionError(f"test table misses {key}")


def remote_state(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {to_remote(k): (v.t() if k.endswith("image_projection.weight") else v).clone() for k, v in native.items()}
    state["language_model.final_logits_bias"] = torch.zeros(1, native["lm_head.weight"].shape[0])
    last_stage = native["model.vision_tower.convs.3.conv.weight"].shape[0]
    state["vision_tower.norms.weight"] = torch.ones(last_stage)
    state["vision_tower.norms.bias"] = torch.zeros(last_stage)
    return state


@pytest.fixture
def remote_folder(tiny_dir, tmp_path):
    native = AutoModelForImageTextToText.from_pretrained(tiny_dir).state_dict()
    folder = tmp_path / "remote"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in remote_state(native).items()}
    state.pop("language_model.model.encoder.embed_tokens.weight")  # tied copies may be absent from a checkpoint
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "microsoft/Florence-2-base"}))
    return folder, native


def logits(model, processor) -> torch.Tensor:
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in shape_samples(2)]
    batch = Florence2Collator(processor, 16)(items)
    with torch.no_grad():
        return model.eval()(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).logits


def test_remote_model_converts_to_identical_native_tensors_and_loads(remote_folder, tiny_dir, tmp_path):
    folder, native = remote_folder
    assert main(["convert", str(folder), "--out", str(tmp_path / "native"), "--base", str(tiny_dir)]) == 0
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "native").state_dict()
    assert loaded.keys() == native.keys()
    assert all(torch.equal(loaded[k], native[k]) for k in native)
    AutoProcessor.from_pretrained(tmp_path / "native")


def test_a_float16_source_stays_float16_and_exact(remote_folder, tiny_dir, tmp_path):
    """The microsoft/Florence-2 checkpoints are float16: the native folder keeps them so (it was
    float32, twice the size) and every tensor equals the source's."""
    folder, native = remote_folder
    half = {k: v.half() for k, v in load_file(str(folder / "model.safetensors")).items()}
    save_file(half, str(folder / "model.safetensors"))
    assert main(["convert", str(folder), "--out", str(tmp_path / "native"), "--base", str(tiny_dir)]) == 0
    saved = load_file(str(tmp_path / "native" / "model.safetensors"))
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.float16}
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "native", dtype="auto")
    assert loaded.dtype == torch.float16
    assert all(torch.equal(loaded.state_dict()[k], native[k].half()) for k in native)


def test_decoding_settings_come_from_the_source_else_the_base(remote_folder, tiny_dir, tmp_path):
    folder, _ = remote_folder
    base = tmp_path / "base"
    shutil.copytree(tiny_dir, base)
    GenerationConfig(num_beams=4, max_length=77).save_pretrained(base)
    assert main(["convert", str(folder), "--out", str(tmp_path / "from-base"), "--base", str(base)]) == 0
    assert GenerationConfig.from_pretrained(tmp_path / "from-base").max_length == 77
    GenerationConfig(num_beams=2, max_length=55).save_pretrained(folder)
    assert main(["convert", str(folder), "--out", str(tmp_path / "from-source"), "--base", str(base)]) == 0
    saved = GenerationConfig.from_pretrained(tmp_path / "from-source")
    assert (saved.num_beams, saved.max_length) == (2, 55)


def test_every_rule_is_exercised_and_every_key_matches_one_rule(remote_folder):
    _, native = remote_folder
    keys = list(remote_state(native))
    used = {match_rule(k)[0] for k in keys}
    assert used == set(RULES)
    for key in keys:  # no key is claimed by two rules (order must not matter)
        assert sum(bool(re.fullmatch(rule.pattern, key)) for rule in RULES) == 1, key


def test_unknown_keys_are_an_error_listing_them(remote_folder, tmp_path, capsys):
    folder, _ = remote_folder
    state = load_file(str(folder / "model.safetensors"))
    state["vision_tower.head.weight"] = torch.zeros(2, 2)
    save_file(state, str(folder / "model.safetensors"))
    assert main(["convert", str(folder), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "1 key(s) match no conversion rule: vision_tower.head.weight" in err and not (tmp_path / "x").exists()


def test_a_nonzero_dropped_tensor_is_refused():
    with pytest.raises(ConvertError, match="final_logits_bias is not all zeros"):
        convert_state_dict({"language_model.final_logits_bias": torch.ones(1, 3)}, "src")


def test_a_different_size_is_refused(remote_folder, tiny_dir, tmp_path):
    folder, _ = remote_folder
    state = load_file(str(folder / "model.safetensors"))
    state["image_proj_norm.weight"] = torch.ones(7)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match="do not fit"):
        convert(folder, tmp_path / "x", base=str(tiny_dir))


@pytest.mark.parametrize("task_type", ["CAUSAL_LM", "SEQ_2_SEQ_LM"])
def test_lora_adapter_trained_on_the_remote_layout_converts_and_loads_with_peft(tiny_dir, tmp_path, task_type):
    base = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    targets = f"{LORA_PRESETS['language']}|{LORA_PRESETS['vision']}"  # the remote projector is no nn.Linear
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "native_adapter")
    native = load_file(str(tmp_path / "native_adapter" / "adapter_model.safetensors"))
    remote = tmp_path / "remote_adapter"
    remote.mkdir()
    prefix = "base_model.model."
    renamed = {}
    for key, tensor in native.items():
        module, part = re.fullmatch(r"base_model\.model\.(.+?)\.(lora_\w+\.weight)", key).groups()
        renamed[prefix + to_remote(f"{module}.weight").removesuffix(".weight") + "." + part] = tensor
    assert any(".fn.net.fc1." in k for k in renamed) and any("language_model.model.encoder" in k for k in renamed)
    save_file(renamed, str(remote / "adapter_model.safetensors"))
    config = json.loads((tmp_path / "native_adapter" / "adapter_config.json").read_text())
    config.update(base_model_name_or_path="microsoft/Florence-2-large", target_modules=["qkv", "fc1", "q_proj"])
    config.update(revision="refs/pr/6", task_type=task_type)  # as adapters on Florence-2-base-ft say
    (remote / "adapter_config.json").write_text(json.dumps(config))

    assert main(["convert", str(remote), "--out", str(tmp_path / "converted")]) == 0
    written = json.loads((tmp_path / "converted" / "adapter_config.json").read_text())
    assert written["base_model_name_or_path"] == "florence-community/Florence-2-large"  # the native twin
    # The source's revision is one of microsoft/Florence-2-large: kept, peft asked the new base for it.
    assert written["revision"] is None and written["task_type"] is None
    converted = load_file(str(tmp_path / "converted" / "adapter_model.safetensors"))
    assert converted.keys() == native.keys() and all(torch.equal(converted[k], native[k]) for k in native)

    written["base_model_name_or_path"] = str(tiny_dir)  # offline: load onto the tiny native base
    (tmp_path / "converted" / "adapter_config.json").write_text(json.dumps(written))
    # peft's one-line load, from the folder alone: it refused a task type ("Cannot use AutoPeftModel with a task type").
    loaded = AutoPeftModel.from_pretrained(tmp_path / "converted")
    assert type(loaded.base_model.model) is type(AutoModelForImageTextToText.from_pretrained(tiny_dir))
    processor = AutoProcessor.from_pretrained(tiny_dir)
    # Compared with the native adapter loaded the same way: a model built in memory and one loaded
    # from disk run their matmuls on differently laid-out tensors (float differences up to ~1e-4).
    reference = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(tiny_dir), tmp_path / "native_adapter"
    )
    assert torch.allclose(logits(loaded, processor), logits(reference, processor), atol=1e-6)


def test_converting_into_the_working_folder_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    """`--out .` from an empty folder passed the check, converted, then failed the final rename
    (`Path('.')` has no name), leaving the output in a hidden `..tmp-*` folder."""
    source = tmp_path / "adapter"
    source.mkdir()
    (source / "adapter_config.json").write_text("{}")  # never read: refused before
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["convert", str(source), "--out", "."]) != 0
    assert "here is (or holds) the folder this command runs in" in capsys.readouterr().err
    assert list((tmp_path / "here").iterdir()) == []


def test_adapter_keys_outside_the_rules_are_errors():
    with pytest.raises(ConvertError, match="base_model.model.vision_tower.head.lora_A.weight"):
        convert_adapter_state({"base_model.model.vision_tower.head.lora_A.weight": torch.zeros(1)}, "src")


def test_base_is_required_when_the_source_does_not_name_one(tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    save_file({"image_proj_norm.weight": torch.ones(2)}, str(folder / "model.safetensors"))
    assert main(["convert", str(folder), "--out", str(tmp_path / "x")]) == 2
    assert "pass --base florence-community/Florence-2-base" in capsys.readouterr().err
    # a weights file: its folder's config is looked for (it was `m/model.safetensors/config.json names 'nothing'`)
    assert main(["convert", str(folder / "model.safetensors"), "--out", str(tmp_path / "x")]) == 2
    assert f"(no config.json in {folder} names it); pass --base" in capsys.readouterr().err


def test_a_training_checkpoint_is_sent_to_export(tmp_path, capsys):
    checkpoint = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, checkpoint)
    assert main(["convert", str(checkpoint), "--out", str(tmp_path / "x")]) == 2
    assert f"{checkpoint} is an f2tune training checkpoint, already native: `f2tune export" in capsys.readouterr().err


def test_converting_into_the_source_folder_is_refused_before_reading_it(remote_folder, tiny_dir, capsys):
    """`--out` the checkpoint's own folder would replace the original weights with the converted
    ones: refused, the folder untouched."""
    folder, _ = remote_folder
    before = sorted(p.name for p in folder.iterdir())
    assert main(["convert", str(folder), "--out", str(folder), "--base", str(tiny_dir)]) == 2
    assert "holds files f2tune did not write (config.json, model.safetensors)" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_download_cut_short_or_a_broken_config_is_named(remote_folder, tiny_dir, tmp_path):
    folder, _ = remote_folder
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConvertError, match=rf"^{weights}: cannot read its weights \(.+\); is the file whole"):
        convert(folder, tmp_path / "x", base=str(tiny_dir))
    (folder / "config.json").write_text("{'not': 'json'}")
    with pytest.raises(ConvertError, match=rf"^{folder / 'config.json'}: not valid JSON"):
        convert(folder, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def no_space(*args, **kwargs):
    """safetensors' report of a full disk: a SafetensorError, which is no OSError."""
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_folder(
    remote_folder, tiny_dir, tmp_path, monkeypatch, capsys
):
    """It was a 20-line traceback ending in safetensors' SafetensorError, which the command line's
    handler of full disks (OSError) missed."""
    folder, _ = remote_folder
    out = tmp_path / "native"
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", no_space)
    assert main(["convert", str(folder), "--out", str(out), "--base", str(tiny_dir)]) == 2
    err = capsys.readouterr().err  # after transformers' progress bar, on the same stream
    assert err.splitlines()[-1].startswith(f"f2tune: error: No space left on device ({out}). ")
    assert err.count("f2tune: error:") == 1 and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".native.")]


@pytest.mark.parametrize("base", ["no-such-dir/base", "empty"], ids=["mistyped", "not-a-model"])
def test_a_base_that_cannot_be_loaded_is_one_line(remote_folder, tmp_path, capsys, base):
    """`--base` offline, mistyped or not a model folder: transformers' OSError was a 60-line traceback."""
    folder, _ = remote_folder
    (tmp_path / "empty").mkdir()
    base = str(tmp_path / base)
    assert main(["convert", str(folder), "--out", str(tmp_path / "x"), "--base", base]) == 2
    err = capsys.readouterr().err
    assert err.startswith("f2tune: error: ") and err.count("\n") == 1 and f"--base {base}" in err
    assert ("no such folder" in err) if "no-such" in base else ("cannot load --base" in err and "config.json" in err)
    assert not (tmp_path / "x").exists()
