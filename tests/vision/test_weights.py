"""Encoder weights from native folders, sharded folders, LoRA exports; errors that list differences."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText

from f2tune.errors import ModelLoadError
from f2tune.vision.extractor import DaViTFeatureExtractor
from f2tune.vision.weights import load_davit_weights, read_vision_tower, vision_config_from


@pytest.fixture(scope="module")
def saved(tiny_dir: Path):
    return AutoModelForImageTextToText.from_pretrained(tiny_dir)


def _assert_same_tower(extractor: DaViTFeatureExtractor, model) -> None:
    for key, value in model.model.vision_tower.state_dict().items():
        torch.testing.assert_close(extractor.davit.state_dict()[key], value)


def test_native_folder(tiny_dir: Path, saved) -> None:
    extractor = DaViTFeatureExtractor(saved.config)
    load_davit_weights(extractor, tiny_dir)
    _assert_same_tower(extractor, saved)


def test_sharded_export(tmp_path: Path, saved) -> None:
    saved.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(read_vision_tower(tmp_path)) == len(saved.model.vision_tower.state_dict())


def test_lora_export_is_merged(tmp_path: Path, tiny_dir: Path, saved) -> None:
    base = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    lora = LoraConfig(r=2, target_modules=r".*vision_tower.*\.qkv", init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    extractor = DaViTFeatureExtractor(saved.config)
    load_davit_weights(extractor, tmp_path / "adapter")
    _assert_same_tower(extractor, merged)
    key = "blocks.0.0.spatial_block.window_attn.qkv.weight"
    assert not torch.equal(extractor.davit.state_dict()[key], saved.model.vision_tower.state_dict()[key])


def test_size_mismatch_lists_differences(tiny_dir: Path, saved) -> None:
    vision = saved.config.vision_config.to_dict() | {"embed_dim": [32, 32, 48, 64], "num_heads": [2, 2, 3, 4]}
    extractor = DaViTFeatureExtractor(type(saved.config.vision_config)(**vision))
    with pytest.raises(ModelLoadError, match=r"first stage width: checkpoint 16, extractor 32(.|\n)*shape differs"):
        load_davit_weights(extractor, tiny_dir)


def test_missing_keys_are_listed(tmp_path: Path, saved) -> None:
    tower = {f"model.vision_tower.{k}": v for k, v in saved.model.vision_tower.state_dict().items()}
    tower.pop("model.vision_tower.convs.3.conv.weight")
    tower["model.vision_tower.extra.weight"] = torch.zeros(1)
    save_file(tower, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"missing(.|\n)*convs\.3\.conv\.weight(.|\n)*unexpected(.|\n)*extra"):
        load_davit_weights(DaViTFeatureExtractor(saved.config), tmp_path)


def test_no_vision_tower_or_no_weights(tmp_path: Path) -> None:
    save_file({"lm_head.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="no 'model.vision_tower"):
        read_vision_tower(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        read_vision_tower(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="no such folder"):
        read_vision_tower("./does/not/exist")


def test_config_from_names_folders_and_lora_exports(tmp_path: Path, tiny_dir: Path, saved) -> None:
    assert vision_config_from("large").embed_dim == [256, 512, 1024, 2048]
    read = vision_config_from(tiny_dir)
    for key in ("embed_dim", "depths", "num_heads", "num_groups", "window_size", "patch_stride", "projection_dim"):
        assert getattr(read, key) == getattr(saved.config.vision_config, key)
    peft_model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(tiny_dir), LoraConfig(r=2, target_modules=r".*qkv")
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    assert vision_config_from(tmp_path / "adapter").embed_dim == saved.config.vision_config.embed_dim


def test_config_from_a_folder_without_one(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no config.json"):
        vision_config_from(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bart"}')
    with pytest.raises(ModelLoadError, match="no vision_config"):
        vision_config_from(tmp_path)


def hub_cache(cache: Path, repo: str, revisions: dict[str, Path]) -> None:
    """`repo` in a local Hub cache as `from_pretrained` leaves it: a snapshot per revision."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    for number, (revision, folder) in enumerate(revisions.items()):
        commit = f"{number:040d}"
        shutil.copytree(folder, root / "snapshots" / commit)
        (root / "refs" / revision).write_text(commit)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_cached_hub_model_loads_offline(offline: Path, tiny_dir: Path, saved) -> None:
    """transformers loads such a repo offline; the probe for an adapter_config.json, which a model
    repo does not have, stopped f2tune ("not in the local Hub cache and the Hub is offline")."""
    hub_cache(offline, "acme/tiny", {"main": tiny_dir})
    assert vision_config_from("acme/tiny").embed_dim == saved.config.vision_config.embed_dim
    assert len(read_vision_tower("acme/tiny")) == len(saved.model.vision_tower.state_dict())
    with pytest.raises(ModelLoadError, match="acme/not-cached is not in the local Hub cache, and the Hub is offline"):
        read_vision_tower("acme/not-cached")


def test_a_lora_export_is_merged_onto_the_base_revision_it_records(offline: Path, tmp_path: Path, saved) -> None:
    """The adapter was merged onto the base's newest revision, not the one it was trained on."""
    trained_on, newer = tmp_path / "v1", tmp_path / "main"
    saved.save_pretrained(trained_on)
    doubled = copy.deepcopy(saved)
    with torch.no_grad():
        for weight in doubled.model.vision_tower.parameters():
            weight.mul_(2)
    doubled.save_pretrained(newer)
    hub_cache(offline, "acme/tiny", {"v1": trained_on, "main": newer})
    peft_model = get_peft_model(copy.deepcopy(saved), LoraConfig(r=2, target_modules=r".*qkv"))
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    config |= {"base_model_name_or_path": "acme/tiny", "revision": "v1"}
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    extractor = DaViTFeatureExtractor(vision_config_from(tmp_path / "adapter"))
    load_davit_weights(extractor, tmp_path / "adapter")
    _assert_same_tower(extractor, saved)  # zero-initialized LoRA: the v1 tower itself


def test_a_lora_export_on_a_base_missing_vision_weights_is_refused(tmp_path: Path, tiny_dir: Path, saved) -> None:
    """The base was loaded without a check: its missing weights started random, and the backbone trained on them."""
    base = tmp_path / "base"
    shutil.copytree(tiny_dir, base)
    weights = load_file(str(base / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if ".convs.0." not in k}, str(base / "model.safetensors"))
    peft_model = get_peft_model(copy.deepcopy(saved), LoraConfig(r=2, target_modules=r".*qkv"))
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base)
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"would start from random values: model\.vision_tower\.convs\.0"):
        load_davit_weights(DaViTFeatureExtractor(saved.config), tmp_path / "adapter")
