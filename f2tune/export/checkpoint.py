"""`f2tune export`: any checkpoint of a run (best, last, or a .ckpt file) -> adapter or model folder.

The end-of-fit export only covers the final weights; runs are often best at an earlier step, or
are stopped before their end. A checkpoint carries its recipe (`hyper_parameters["recipe"]`), so
the model is rebuilt exactly as it was trained and the checkpoint's weights are loaded into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml
from torch import nn

from f2tune.config import Recipe
from f2tune.data.datamodule import Florence2DataModule
from f2tune.errors import RunError
from f2tune.export.atomic import check_replaceable
from f2tune.export.facts import gather_facts
from f2tune.export.writer import ExportError, export_kind, export_model
from f2tune.log import say
from f2tune.model.loading import load_processor
from f2tune.recipe import validate_recipe
from f2tune.train.locate import checkpoint_contents, run_checkpoint
from f2tune.train.setup import build_trainable_model

Kind = Literal["adapter", "merged"]


@dataclass
class Checkpoint:
    """A checkpoint file, the run it belongs to, and what it holds."""

    path: Path
    run_dir: Path
    recipe: Recipe
    step: int | None
    state_dict: dict[str, torch.Tensor]


TRUE_PRECISION_DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16}
"""Precisions whose training converts every weight: what a checkpoint of such a run holds."""


def export_checkpoint(
    source: str | Path,
    out: Path,
    kind: Kind | None = None,
    which: str = "best",
    datamodule: Florence2DataModule | None = None,
) -> Path:
    """Export `source` (a run folder -> its `which` checkpoint, or a .ckpt file) into `out`;
    `datamodule`: the run's data, already read (the card's data sizes), else read again."""
    if _replaces_source(Path(out), Path(source)):
        raise ExportError(
            f"--out {out} holds the checkpoint being exported ({source}): the export would replace it; give "
            "another folder"
        )
    check_replaceable(Path(out), "export")
    checkpoint = read_checkpoint(source, which)
    recipe = checkpoint.recipe
    natural = "adapter" if export_kind(recipe) == "adapter" else "merged"
    kind = kind or natural
    if kind == "adapter" and recipe.adaptation.method != "lora":
        raise ExportError(
            f"{checkpoint.path}: --kind adapter needs a LoRA checkpoint, but this run trained every weight "
            "(adaptation.method: full); export it with --kind merged"
        )
    model = model_from_checkpoint(checkpoint)
    facts = gather_facts(
        recipe,
        checkpoint.run_dir,
        "adapter" if kind == "adapter" else "model",
        datamodule=datamodule,
        step=checkpoint.step,
        checkpoint=f"step {checkpoint.step} ({checkpoint.path.name})",
    )
    export_model(model, load_processor(recipe.model), recipe, Path(out), facts)
    say(f"export: {checkpoint.path} -> {out} ({kind})")
    return Path(out)


def _replaces_source(out: Path, source: Path) -> bool:
    """Whether exporting into `out`, which the export replaces whole, would delete `source`: `out` is
    the source, a folder above it, or a run folder's checkpoint folder."""
    source = source.resolve()
    return out.resolve() in {source, *source.parents, source / "checkpoints"}


def read_checkpoint(source: str | Path, which: str = "best") -> Checkpoint:
    path = Path(source)
    if path.is_dir():
        run_dir, path = path, run_checkpoint(path, which)
    elif path.is_file() and path.suffix == ".ckpt":
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    else:
        raise RunError(f"export: {source} is neither a run folder nor a .ckpt file")
    state = checkpoint_contents(path, mmap=False)
    raw = state.get("hyper_parameters", {}).get("recipe") or _config_yaml(run_dir, path)
    recipe = validate_recipe(raw, source=f"recipe of {path}")
    return Checkpoint(path, run_dir, recipe, state.get("global_step"), state["state_dict"])


def model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """The recipe's model (peft-wrapped for LoRA runs) with the checkpoint's weights loaded.

    LoRA checkpoints hold only the trainable weights, so only those must match; full checkpoints
    must cover every weight. Keys the model does not have mean a different recipe: an error.
    """
    model = build_trainable_model(checkpoint.recipe)
    weights = {k.removeprefix("model."): v for k, v in checkpoint.state_dict.items() if k.startswith("model.")}
    lora = checkpoint.recipe.adaptation.method == "lora"
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if lora:
        missing = [k for k in missing if k in {n for n, p in model.named_parameters() if p.requires_grad}]
    if missing or unexpected:
        listed = ", ".join((missing + unexpected)[:5])
        raise ExportError(
            f"{checkpoint.path}: its weights do not fit the model its recipe builds ({len(missing)} missing, "
            f"{len(unexpected)} unexpected: {listed}); was the recipe or config.yaml changed after training?"
        )
    trained_in = TRUE_PRECISION_DTYPES.get(checkpoint.recipe.trainer.precision)
    # a `*-true` run trained and exported at the end of fit in that dtype; loaded into the recipe's
    # float32 model, the same weights were written at twice the size by `f2tune export`
    return (model.to(trained_in) if trained_in else model).eval()


def _config_yaml(run_dir: Path, path: Path) -> dict:
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise RunError(f"{path}: the checkpoint holds no recipe and {config} does not exist; cannot rebuild the model")
    return yaml.safe_load(config.read_text())
