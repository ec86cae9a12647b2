"""README.md model cards with Hugging Face Hub metadata, written into every export.

The card is what a person finds on the Hub page: which base it adapts, what it was trained on and
how to prompt it, what it scored, and a snippet that loads it with plain transformers (+ peft),
so a shared export is usable without f2tune.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

import f2tune
from f2tune.config import Recipe
from f2tune.eval.metrics import metric_text
from f2tune.recipe import dump_recipe

LICENSE = "mit"
"""Florence-2's weights are MIT-licensed; a fine-tune inherits the base model's license."""

REGION_PLACEHOLDER = "<loc_x1><loc_y1><loc_x2><loc_y2>"
"""A region input as a card shows it: four location tokens, bins of the image's width and height."""


@dataclass
class DataRow:
    """One training source as the card lists it. Two sources over one dataset (one per task) carry
    the same name, so each row names its tasks too."""

    name: str
    tasks: list[str] = field(default_factory=list)  # "" for free-text prompts
    samples: int | None = None  # None: the data could not be read at export time


@dataclass
class CardFacts:
    """What the card states about the training run, gathered from the run and its data."""

    base_model: str
    kind: str  # "adapter" or "model"
    train_samples: int | None  # None: the training data could not be read at export time
    prompts: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    datasets: list[DataRow] = field(default_factory=list)  # one per training source
    hub_datasets: list[str] = field(default_factory=list)  # Hub ids of the training data, for the metadata
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str | None = None  # where the metrics were read, e.g. predictions/val-step000004
    checkpoint: str | None = None  # which checkpoint was exported, e.g. "step 4 (best)"


def card_metadata(facts: CardFacts) -> dict:
    """The YAML front matter the Hub reads (model tree, library, widget type, search tags)."""
    adapter = facts.kind == "adapter"
    metadata = {
        "base_model": facts.base_model,
        "library_name": "peft" if adapter else "transformers",
        "pipeline_tag": "image-text-to-text",
        "license": LICENSE,
        "tags": ["florence-2", "f2tune"] + (["lora"] if adapter else []),
    }
    if facts.hub_datasets:  # the Hub links each to its dataset page: local source names would mislead
        metadata["datasets"] = facts.hub_datasets
    return metadata


def render_model_card(recipe: Recipe, facts: CardFacts) -> str:
    adapter = facts.kind == "adapter"
    samples = "an unknown number of" if facts.train_samples is None else str(facts.train_samples)
    checkpoint = f" Exported from the checkpoint at {facts.checkpoint}." if facts.checkpoint else ""
    return (
        f"---\n{yaml.safe_dump(card_metadata(facts), sort_keys=False)}---\n\n"
        f"# {recipe.trainer.run_name or 'Florence-2 fine-tune'}\n\n"
        f"{'A LoRA adapter for' if adapter else 'A fine-tuned'} `{facts.base_model}`, trained with "
        f"f2tune {f2tune.__version__} on {samples} samples.{checkpoint}\n\n"
        f"## Tasks and prompt format\n\n{_tasks(facts)}\n\n"
        f"## Training data\n\n{_data(facts)}\n\n"
        f"## Results\n\n{_metrics(facts)}\n\n"
        f"## Usage\n\n```python\n{_usage(facts, adapter)}```\n\n"
        f"## Training recipe\n\n```yaml\n{dump_recipe(recipe)}```\n\n"
        f"Trained with f2tune {f2tune.__version__}.\n"
    )


def _tasks(facts: CardFacts) -> str:
    tasks = ", ".join(f"`{t}`" for t in facts.tasks) or "free-text prompts"
    prompts = "\n".join(f"- `{p}`" for p in facts.prompts) or "- (none recorded)"
    return (
        f"Tasks: {tasks}. Give the processor the task token (followed by its text input, if any) as "
        "`text=`; it rewrites Florence-2 task tokens into the sentences the model was trained on. "
        "Location tokens `<loc_0>`..`<loc_999>` in answers are bins of 1/1000 of the image side; "
        "`processor.post_process_generation(text, task=TOKEN, image_size=(w, h))` turns them into pixels.\n\n"
        f"Prompts seen in training (up to 10):\n\n{prompts}"
    )


def _data(facts: CardFacts) -> str:
    if not facts.datasets:
        return "Not recorded."
    rows = "\n".join(
        f"| {row.name} | {_task_list(row.tasks)} | {'?' if row.samples is None else row.samples} |"
        for row in facts.datasets
    )
    return f"| source | tasks | training samples |\n|---|---|---:|\n{rows}"


def _task_list(tasks: list[str]) -> str:
    """Task tokens in code spans (a bare `<OD>` is an HTML tag to the Hub's renderer, and vanishes)."""
    if not tasks:
        return "?"
    return ", ".join(f"`{task}`" if task else "free text" for task in tasks)


def _metrics(facts: CardFacts) -> str:
    if not facts.metrics:
        return "Not evaluated."
    rows = "\n".join(f"| {k} | {metric_text(k, v)} |" for k, v in sorted(facts.metrics.items()))
    source = f"Measured by the run (`{facts.metrics_source}/metrics.json`).\n\n" if facts.metrics_source else ""
    legend = "\n\nn/a: no reference box of that size (COCO reports -1)." if "| n/a |" in rows else ""
    return f"{source}| metric | value |\n|---|---|\n{rows}{legend}"


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
    prompt = next((p for p in facts.prompts if REGION_PLACEHOLDER not in p), "<CAPTION>")  # one that runs as written
    return (
        "from PIL import Image\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        f"{load}"
        f'inputs = processor(text="{prompt}", images=Image.open("image.jpg"), return_tensors="pt")\n'
        "ids = model.generate(**inputs, max_new_tokens=256, num_beams=3)\n"
        "print(processor.batch_decode(ids, skip_special_tokens=False)[0])\n"
    )
