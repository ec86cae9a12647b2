"""README.md model cards with Hugging Face Hub metadata, written into every export."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

import f2tune
from f2tune.config import Recipe
from f2tune.recipe import dump_recipe


@dataclass
class CardFacts:
    """What the card states about the training run, gathered by the fit command."""

    base_model: str
    kind: str  # "adapter" or "model"
    train_samples: int
    prompts: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def render_model_card(recipe: Recipe, facts: CardFacts) -> str:
    adapter = facts.kind == "adapter"
    metadata = {
        "base_model": facts.base_model,
        "library_name": "peft" if adapter else "transformers",
        "pipeline_tag": "image-text-to-text",
        "license": "mit",
        "tags": ["florence-2", "f2tune"] + (["lora"] if adapter else []),
    }
    prompts = "\n".join(f"- `{p}`" for p in facts.prompts) or "- (none recorded)"
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(facts.metrics.items()))
    metrics_block = f"| metric | value |\n|---|---|\n{metrics}" if metrics else "Not evaluated."
    return (
        f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n\n"
        f"# {recipe.trainer.run_name or 'Florence-2 fine-tune'}\n\n"
        f"{'A LoRA adapter for' if adapter else 'A fine-tuned'} `{facts.base_model}`, trained with "
        f"f2tune {f2tune.__version__} on {facts.train_samples} samples.\n\n"
        f"## Prompts it was trained on\n\n{prompts}\n\n"
        f"## Results (validation data of the run)\n\n{metrics_block}\n\n"
        f"## Usage\n\n```python\n{_usage(facts, adapter)}```\n\n"
        f"## Training recipe\n\n```yaml\n{dump_recipe(recipe)}```\n"
    )


def _usage(facts: CardFacts, adapter: bool) -> str:
    load = (
        "from peft import PeftModel\n"
        f'base = AutoModelForImageTextToText.from_pretrained("{facts.base_model}")\n'
        'model = PeftModel.from_pretrained(base, "THIS_FOLDER_OR_REPO")\n'
        f'processor = AutoProcessor.from_pretrained("{facts.base_model}")\n'
        if adapter
        else 'model = AutoModelForImageTextToText.from_pretrained("THIS_FOLDER_OR_REPO")\n'
        'processor = AutoProcessor.from_pretrained("THIS_FOLDER_OR_REPO")\n'
    )
    prompt = facts.prompts[0] if facts.prompts else "<CAPTION>"
    return (
        "from PIL import Image\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        f"{load}"
        f'inputs = processor(text="{prompt}", images=Image.open("image.jpg"), return_tensors="pt")\n'
        "ids = model.generate(**inputs, max_new_tokens=256, num_beams=3)\n"
        "print(processor.batch_decode(ids, skip_special_tokens=False)[0])\n"
    )
