"""Loading something to predict with: a Hub id, an exported model folder, a peft adapter folder
(its base comes from `adapter_config.json`), or a run folder (its `export/`)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers import Florence2Processor

from f2tune.config import ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.model.loading import load_model, load_processor


def resolve_source(source: str) -> Path | str:
    """A run folder means its export; anything else is used as given."""
    path = Path(source)
    if (path / "config.yaml").is_file() and (path / "export").is_dir():
        return path / "export"
    return path if path.exists() else source


def load_for_inference(source: str, dtype: str = "float32") -> tuple[nn.Module, Florence2Processor]:
    """Model in eval mode and its processor; adapters are applied on top of their base model."""
    resolved = resolve_source(source)
    adapter_config = Path(resolved) / "adapter_config.json" if isinstance(resolved, Path) else None
    if adapter_config is not None and adapter_config.is_file():
        from peft import PeftModel

        base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not base:
            raise ModelLoadError(f"{adapter_config}: no base_model_name_or_path; cannot tell which model it adapts")
        base_config = ModelConfig(name_or_path=base, dtype=dtype)
        model = PeftModel.from_pretrained(load_model(base_config), resolved)
        processor = load_processor(base_config)
    else:
        config = ModelConfig(name_or_path=str(resolved), dtype=dtype)
        model, processor = load_model(config), load_processor(config)
    return model.eval(), processor
