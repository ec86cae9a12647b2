"""Loading something to predict with: a Hub id, an exported model folder, a peft adapter (folder or
Hub id; its base comes from `adapter_config.json`), a run folder (its `export/`), or a training
checkpoint (`.ckpt`: the model rebuilt from the recipe inside it, as `f2tune export` does)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import Florence2Processor

from f2tune.config import ModelConfig
from f2tune.errors import RecipeError, RunError, first_few
from f2tune.export.checkpoint import model_from_checkpoint, read_checkpoint
from f2tune.model.loading import attach_adapter, load_model, load_processor


def resolve_source(source: str | Path) -> Path | str:
    """A run folder means its export; anything else is used as given.

    A run folder without one (exported elsewhere, not at all, or stopped before its end) is refused
    here, before any work, naming its checkpoints, which predict takes as they are: loaded as a
    model folder it would fail for want of a `config.json`, naming none of this."""
    path = Path(source)
    if not is_run_folder(path):
        return path if path.exists() else str(source)
    if (path / "export").is_dir():
        return path / "export"
    checkpoints = sorted((path / "checkpoints").glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", p.name))
    instead = (
        f"give one of its checkpoints instead: {first_few([str(p) for p in checkpoints])}"
        if checkpoints
        else f"it has no checkpoint either ({path / 'checkpoints'}); train it first (f2tune fit)"
    )
    raise RunError(
        f"{path} is a run folder without an export/ (export disabled or sent elsewhere by export.dir, or the run "
        f"stopped before its end): {instead}"
    )


def load_for_inference(source: str | Path, dtype: str = "float32") -> tuple[nn.Module, Florence2Processor]:
    """Model in eval mode and its processor; adapters are applied on top of their base model."""
    resolved = resolve_source(source)
    if isinstance(resolved, Path) and resolved.is_file() and resolved.suffix == ".ckpt":
        checkpoint = read_checkpoint(resolved)
        model = model_from_checkpoint(checkpoint).to(getattr(torch, dtype))
        return model.eval(), load_processor(checkpoint.recipe.model)
    if _is_adapter(resolved):
        config = ModelConfig(adapter=str(resolved), dtype=dtype)
        model = attach_adapter(load_model(config), config, trainable=False)
    else:
        config = ModelConfig(name_or_path=str(resolved), dtype=dtype)
        model = load_model(config)
    return model.eval(), load_processor(config)


def inference_device(name: str) -> torch.device:
    """`auto`: the first GPU when torch sees one (Florence-2-large generates many times faster
    there), else the CPU; otherwise the device named (`cpu`, `cuda`, `cuda:1`), checked here so
    that a wrong name fails before the model is loaded."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"--device {name}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"--device {name}: torch sees no CUDA device here; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RecipeError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def is_run_folder(path: Path) -> bool:
    """A folder `f2tune fit` made: its recipe (`config.yaml`), and no model or adapter of its own."""
    model_files = ("config.json", "adapter_config.json")
    return (path / "config.yaml").is_file() and not any((path / name).is_file() for name in model_files)


def _is_adapter(source: Path | str) -> bool:
    """A folder with adapter_config.json, or a Hub repo holding one: in the local Hub cache (which
    works offline, as loading the adapter does) or else asked of the Hub (unreachable: no)."""
    if isinstance(source, Path):
        return (source / "adapter_config.json").is_file()
    from huggingface_hub import file_exists, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(source, "adapter_config.json"), str):
            return True
        return file_exists(source, "adapter_config.json")
    except Exception:  # offline, unreachable, not a repo id: loading it as a model then says why
        return False
