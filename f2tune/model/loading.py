"""One code path from `model.name_or_path` (Hub id, local folder, or the tiny offline model) to a
Florence-2 model in train mode and its processor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, Florence2Processor, PreTrainedModel

from f2tune.config import TINY_MODEL, ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.testing.tiny import build_tiny_model, build_tiny_processor

TINY_SEED = 0
"""Weights of the tiny model are a function of this seed, so every process builds the same ones."""

T = TypeVar("T")


def load_processor(config: ModelConfig) -> Florence2Processor:
    if config.name_or_path == TINY_MODEL:
        return build_tiny_processor()
    return _from_hub_or_folder(config, lambda: AutoProcessor.from_pretrained(config.name_or_path, **_common(config)))


def load_model(config: ModelConfig) -> PreTrainedModel:
    """The model in train mode (`from_pretrained` returns eval mode, which would disable dropout)."""
    dtype = getattr(torch, config.dtype)
    if config.name_or_path == TINY_MODEL:
        model = build_tiny_model(build_tiny_processor(), seed=TINY_SEED).to(dtype)
    else:
        model = _from_hub_or_folder(
            config,
            lambda: AutoModelForImageTextToText.from_pretrained(
                config.name_or_path, dtype=dtype, attn_implementation=config.attn_implementation, **_common(config)
            ),
        )
    model.train()
    return model


def _common(config: ModelConfig) -> dict:
    return {"revision": config.revision, "trust_remote_code": config.trust_remote_code}


def _from_hub_or_folder(config: ModelConfig, load: Callable[[], T]) -> T:
    """Run `load`, turning transformers' long OSError/ValueError texts into one actionable message."""
    name = config.name_or_path
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if looks_local and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"model.name_or_path: no such folder: {name} (a Hub id has the form owner/name)")
    try:
        return load()
    except (OSError, ValueError) as err:
        text = str(err).strip()
        first_line = text.splitlines()[0] if text else type(err).__name__
        raise ModelLoadError(
            f"cannot load model.name_or_path={config.name_or_path!r}: {first_line}\n"
            "Give a Hub id you can reach, or a local folder holding config.json, model.safetensors and the "
            f"processor files (offline, only local folders and {TINY_MODEL} work)."
        ) from None
