"""One code path from `model.name_or_path` (Hub id, local folder, or the tiny offline model) to a
Florence-2 model in train mode and its processor; `model.adapter` adds a shared peft adapter on top
(its base, when `name_or_path` is not given, is the one named in its `adapter_config.json`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from peft import PeftConfig, PeftModel
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    Florence2Processor,
    PretrainedConfig,
    PreTrainedModel,
)

from f2tune.config import TINY_MODEL, ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.log import warn
from f2tune.testing.tiny import build_tiny_model, build_tiny_processor

NATIVE_VISION_TYPE = "florence_vision"
"""`vision_config.model_type` of transformers' native Florence-2; the remote code's is `davit`."""

TINY_SEED = 0
"""Weights of the tiny model are a function of this seed, so every process builds the same ones."""

T = TypeVar("T")


def base_model_name(config: ModelConfig) -> str:
    """`model.name_or_path`, or the base model named by `model.adapter`'s adapter_config.json."""
    if config.name_or_path is not None:
        return config.name_or_path
    base = _adapter_config(config).base_model_name_or_path
    if not base:
        raise ModelLoadError(
            f"model.adapter={config.adapter!r}: its adapter_config.json names no base_model_name_or_path; "
            "set model.name_or_path to the model it adapts"
        )
    return base


def base_model_revision(config: ModelConfig) -> str | None:
    """`model.revision`; where the base comes from `model.adapter`, and no revision is set, the one
    its adapter_config.json records (f2tune's exports write it): the base the adapter was trained on."""
    if config.revision is not None or config.name_or_path is not None:
        return config.revision
    return _adapter_config(config).revision


def _adapter_config(config: ModelConfig) -> PeftConfig:
    assert config.adapter is not None, "ModelConfig's validator requires name_or_path or adapter"
    try:
        return PeftConfig.from_pretrained(config.adapter)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"cannot read the adapter_config.json of model.adapter={config.adapter!r}: {_first_line(err)}\n"
            "Give a local adapter folder or a Hub id you can reach, or set model.name_or_path too."
        ) from None


def load_processor(config: ModelConfig) -> Florence2Processor:
    name = base_model_name(config)
    if name == TINY_MODEL:
        return build_tiny_processor()
    return _from_hub_or_folder(config, lambda: AutoProcessor.from_pretrained(name, **_common(config)))


def text_positions(config: ModelConfig) -> int:
    """The positions of the model's text encoder and decoder, from its config alone (no weights)."""
    name = base_model_name(config)
    if name == TINY_MODEL:
        return build_tiny_model(build_tiny_processor(), seed=TINY_SEED).config.text_config.max_position_embeddings
    loaded = _from_hub_or_folder(config, lambda: AutoConfig.from_pretrained(name, **_common(config)))
    return loaded.text_config.max_position_embeddings


def load_model(config: ModelConfig) -> PreTrainedModel:
    """The base model in train mode (`from_pretrained` returns eval mode, which would disable dropout).

    `model.adapter` is not applied here: callers decide whether its weights train (`attach_adapter`).
    """
    dtype = getattr(torch, config.dtype)
    name = base_model_name(config)
    if name == TINY_MODEL:
        model = build_tiny_model(build_tiny_processor(), seed=TINY_SEED).to(dtype)
        if config.attn_implementation != "auto":  # built with SDPA, like a loaded model under auto
            model.set_attn_implementation(config.attn_implementation)
    else:
        if config.allow_pickle:
            warn(f"model.allow_pickle is set: pickle (.bin) weights of {name} may be loaded; they can run code")
        model, info = _from_hub_or_folder(
            config,
            lambda: AutoModelForImageTextToText.from_pretrained(
                name,
                dtype=dtype,
                # auto is decided by the Trainer (f2tune.model.attention); until then SDPA.
                attn_implementation="sdpa" if config.attn_implementation == "auto" else config.attn_implementation,
                use_safetensors=None if config.allow_pickle else True,
                output_loading_info=True,
                **_common(config),
            ),
        )
        _refuse_random_weights(name, info)
    model.train()
    return model


def attach_adapter(model: PreTrainedModel, config: ModelConfig, trainable: bool) -> PeftModel:
    """Wrap `model` with the peft adapter of `model.adapter` (LoRA weights trainable if asked)."""
    assert config.adapter is not None
    adapter = config.adapter
    looks_local = adapter.startswith(("/", ".", "~")) or adapter.count("/") > 1
    if looks_local and not Path(adapter).expanduser().is_dir():
        raise ModelLoadError(f"model.adapter: {no_folder(adapter)}")
    try:
        peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"cannot load model.adapter={adapter!r}: {_first_line(err)}\n"
            "Give a folder or Hub id holding adapter_config.json and adapter_model.safetensors, trained on this base."
        ) from None
    peft_model.train(model.training)
    return peft_model


def _common(config: ModelConfig) -> dict:
    return {"revision": base_model_revision(config), "trust_remote_code": config.trust_remote_code}


def _from_hub_or_folder(config: ModelConfig, load: Callable[[], T]) -> T:
    """Run `load`, turning transformers' long OSError/ValueError texts into one actionable message."""
    name = base_model_name(config)
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if looks_local and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"model.name_or_path: {no_folder(name)}")
    _refuse_remote_code_layout(config, name)
    try:
        return load()
    except RuntimeError as err:  # transformers' report of weights whose shapes do not fit the config
        raise ModelLoadError(
            f"cannot load model.name_or_path={name!r}: some of its weights do not fit the model its config "
            f"describes ({_first_line(err)}); is it a Florence-2 checkpoint in transformers' native layout?"
        ) from None
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"cannot load model.name_or_path={name!r}: {_first_line(err)}\n"
            "Give a Hub id you can reach, or a local folder holding config.json, model.safetensors and the "
            f"processor files (offline, only local folders and {TINY_MODEL} work)."
        ) from None


def _refuse_remote_code_layout(config: ModelConfig, name: str) -> None:
    """Stop before loading the original remote-code checkpoints (microsoft/Florence-2-*, and models
    fine-tuned from them): transformers' native Florence-2 reads their config as its own but finds
    none of its weight names in them; what it can build from that starts from random weights, with
    only a report in the log."""
    try:
        raw, _ = PretrainedConfig.get_config_dict(name, revision=base_model_revision(config))
    except (OSError, ValueError):
        return  # no config to read: `load` says why, in its own words
    vision = (raw.get("vision_config") or {}).get("model_type")
    remote = vision == "davit" or (raw.get("auto_map") and vision != NATIVE_VISION_TYPE)
    if raw.get("model_type") == "florence2" and remote:
        raise ModelLoadError(
            f"model.name_or_path={name!r} is a Florence-2 checkpoint in the original remote-code layout "
            "(microsoft/Florence-2-*), whose weights are named for that code, not for transformers' native "
            "Florence-2 that f2tune trains. Use florence-community/Florence-2-base or -large (the same weights, "
            "native layout), or, for a model or adapter fine-tuned in that layout, download it and run "
            "`f2tune convert FOLDER --out NATIVE_FOLDER`, then give NATIVE_FOLDER."
        )


def _refuse_random_weights(name: str, info: dict) -> None:
    """A checkpoint that lacks some of the model's weights would train them from random values."""
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise ModelLoadError(
            f"model.name_or_path={name!r}: {len(missing)} weight(s) of the model are not in the checkpoint and "
            f"would start from random values: {shown}. Is it a complete Florence-2 model in transformers' native "
            "layout (a peft adapter goes in model.adapter)?"
        )


def no_folder(name: str) -> str:
    """Why a local-looking model source is not one: absent, or a file (a training checkpoint is
    the usual one, which `f2tune export` turns into a model folder)."""
    path = Path(name).expanduser()
    if not path.is_file():
        return f"no such folder: {name} (a Hub id has the form owner/name)"
    if path.suffix == ".ckpt":
        return (
            f"{name} is a training checkpoint, not a model folder: make one of it with "
            f"`f2tune export {name} --out DIR` (`f2tune predict` takes it as it is)"
        )
    return f"{name} is a file, not a model folder (a folder with config.json and the weights, or a Hub id)"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
