"""Write a trained model in the formats the ecosystem loads.

- LoRA (default): a peft adapter folder, loaded with `PeftModel.from_pretrained(base, folder)`.
- full fine-tuning, or LoRA with `lora.merge: true` (`--kind merged`): a model + processor folder,
  loaded with `AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from peft import PeftModel
from torch import nn
from transformers import Florence2Processor

from f2tune.config import Recipe
from f2tune.errors import F2TuneError, safetensors_os_errors
from f2tune.export.atomic import atomic_folder
from f2tune.export.model_card import CardFacts, render_model_card
from f2tune.log import no_save_bars


class ExportError(F2TuneError):
    """What was asked cannot be exported (e.g. an adapter from a full fine-tuning run)."""


def export_kind(recipe: Recipe) -> str:
    """`adapter` for unmerged LoRA runs, `model` otherwise."""
    return "adapter" if recipe.adaptation.method == "lora" and not recipe.lora.merge else "model"


def export_model(
    model: nn.Module, processor: Florence2Processor, recipe: Recipe, target: Path, facts: CardFacts
) -> Path:
    """Write the export folder atomically (an interrupted export never leaves a half folder)."""
    if facts.kind == "adapter" and not isinstance(model, PeftModel):
        raise ExportError(
            f"{target}: cannot write an adapter: the run trained every weight (adaptation.method: full), so there "
            "is no LoRA adapter to save; export a model folder instead (--kind merged)"
        )
    # a full disk met by safetensors is an OSError here, raised inside the staging folder (then removed)
    with atomic_folder(target, "export") as staging, safetensors_os_errors(target), no_save_bars():
        if facts.kind == "adapter":
            config = model.peft_config["default"]  # what AutoPeftModel loads the base with
            config.base_model_name_or_path, config.revision = facts.base_model, facts.base_revision
            # f2tune never resizes the vocabulary, so the base's embeddings stay out of the adapter;
            # peft's "auto" would ask the Hub for the base's config to find out (a warning offline)
            model.save_pretrained(staging, save_embedding_layers=False)
        else:
            full = copy.deepcopy(model).merge_and_unload() if isinstance(model, PeftModel) else model
            full.save_pretrained(staging)
            processor.save_pretrained(staging)
        (staging / "README.md").write_text(render_model_card(recipe, facts))
    return target
