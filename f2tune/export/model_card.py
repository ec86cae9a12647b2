"""README.md model cards with Hugging Face Hub metadata, written into every export.

The card is what a person finds on the Hub page: which base it adapts, what it was trained on and
how to prompt it, what it scored, and a snippet that loads it with plain transformers (+ peft),
so a shared export is usable without f2tune.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import yaml

import f2tune
from f2tune.config import Recipe
from f2tune.eval.evaluator import Decoding
from f2tune.eval.metrics import metric_text
from f2tune.hub.names import REPO_PLACEHOLDER, REPO_PLACEHOLDER_NOTE, is_hub_id
from f2tune.recipe import dump_recipe
from f2tune.tasks import TASKS

REGION_PLACEHOLDER = "<loc_x1><loc_y1><loc_x2><loc_y2>"
"""A region input as a card shows it: four location tokens, bins of the image's width and height."""

EXAMPLE_REGION = "<loc_250><loc_250><loc_750><loc_750>"
"""The region the usage code asks about where every trained prompt takes one: the image's middle half."""


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
    base_revision: str | None = None  # the Hub revision of base_model the run loaded (None: its main branch)
    license: str | None = None  # Hub license id; None: not stated (the base's and the data's terms apply)
    train_samples: int | None = None  # None: the training data could not be read at export time
    prompts: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    datasets: list[DataRow] = field(default_factory=list)  # one per training source
    hub_datasets: list[str] = field(default_factory=list)  # Hub ids of the training data, for the metadata
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str | None = None  # where the metrics were read, e.g. predictions/val-step000004
    checkpoint: str | None = None  # which checkpoint was exported, e.g. "step 4 (best)"
    step: int | None = None  # the training step of the exported weights
    metrics_step: int | None = None  # the step the metrics were measured at (may differ from `step`)
    metrics_split: str | None = None  # "val" or "test"
    metrics_samples: int | None = None  # how many samples the metrics were measured on


def card_metadata(facts: CardFacts) -> dict:
    """The YAML front matter the Hub reads (model tree, library, widget type, search tags).

    A local base (a folder, or the tiny test model's saved copy) is left out of `base_model`:
    the Hub accepts only model ids there and refuses the whole upload otherwise."""
    adapter = facts.kind == "adapter"
    metadata: dict = {}
    if is_hub_id(facts.base_model):
        metadata["base_model"] = facts.base_model
    metadata.update(
        {
            "library_name": "peft" if adapter else "transformers",
            "pipeline_tag": "image-text-to-text",
            **({"license": facts.license} if facts.license else {}),
            "tags": ["florence-2", "f2tune"] + (["lora"] if adapter else []),
        }
    )
    datasets = [name for name in facts.hub_datasets if is_hub_id(name)]
    if datasets:  # the Hub links each to its dataset page: local source names would mislead
        metadata["datasets"] = datasets
    return metadata


def render_model_card(recipe: Recipe, facts: CardFacts) -> str:
    """The whole README.md: front matter, then what a reader needs to use and judge the weights."""
    adapter = facts.kind == "adapter"
    samples = "an unknown number of" if facts.train_samples is None else str(facts.train_samples)
    checkpoint = f" Exported from the checkpoint at {facts.checkpoint}." if facts.checkpoint else ""
    return (
        f"---\n{yaml.safe_dump(card_metadata(facts), sort_keys=False)}---\n\n"
        f"# {recipe.trainer.run_name or 'Florence-2 fine-tune'}\n\n"
        f"{'A LoRA adapter for' if adapter else 'A fine-tuned'} `{facts.base_model}`, trained with "
        f"f2tune on {samples} samples.{checkpoint}{_local_base(facts, adapter)}\n\n{_license(facts)}\n\n"
        f"## Tasks and prompt format\n\n{_tasks(facts)}\n\n"
        f"## Training data\n\n{_data(facts)}\n\n"
        f"## Results\n\n{_metrics(facts)}\n\n"
        f"## Usage\n\n{_usage_intro(facts)}\n\n```python\n{_usage(facts, recipe, adapter)}```\n\n"
        f"## Training recipe\n\n```yaml\n{dump_recipe(recipe)}```\n\n"
        f"Exported with {_versions()}.\n"
    )


def _versions() -> str:
    """The library versions of the export (those the training used are not recorded in a run)."""
    found = [f"f2tune {f2tune.__version__}"]
    for package in ("transformers", "peft", "torch"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def _local_base(facts: CardFacts, adapter: bool) -> str:
    """What a local base means for the reader: the metadata cannot name it, and an adapter needs it."""
    if is_hub_id(facts.base_model):
        return ""
    if not adapter:
        return "\n\nThe base model is a local folder, so the metadata names none (the Hub takes model ids only)."
    return (
        "\n\nThe base model is a local folder, not a Hub model: the usage code below loads it from that path "
        "(as does `AutoPeftModel`, from `adapter_config.json`), so it runs only where that folder exists; "
        "elsewhere, give the Hub id of the same base model instead."
    )


def _license(facts: CardFacts) -> str:
    if facts.license:
        return f"License: `{facts.license}`."
    return (
        "License: not stated. The weights carry the terms of the base model and of the training data; "
        "set `export.license` in the recipe to state them."
    )


def _tasks(facts: CardFacts) -> str:
    tasks = ", ".join(f"`{t}`" for t in facts.tasks) or "free-text prompts"
    prompts = "\n".join(f"- {_code_span(p)}" for p in facts.prompts) or "- (none recorded)"
    return (
        f"Tasks: {tasks}. Give the processor the task token (followed by its text input, if any) as "
        "`text=`; it rewrites Florence-2 task tokens into the sentences the model was trained on. "
        "Location tokens `<loc_0>`..`<loc_999>` in answers are bins of 1/1000 of the image side; "
        "`processor.post_process_generation(text, task=TOKEN, image_size=(w, h))` turns them into pixels.\n\n"
        f"Prompts seen in training (up to 10):\n\n{prompts}"
    )


def _code_span(text: str) -> str:
    """`text` as one Markdown code span, whatever it holds: fenced by one backtick more than its
    longest run of them (a prompt with a backtick ended a single-backtick span midway), and with
    line breaks written as the Python string shows them (a line break would end the list item)."""
    if "\n" in text or "\r" in text:
        text = _python_string(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
    legend = "\n\nn/a: no reference box of that size (COCO reports -1)." if "| n/a |" in rows else ""
    return f"{_measured(facts)}| metric | value |\n|---|---|\n{rows}{legend}"


def _measured(facts: CardFacts) -> str:
    """Where, when and on what the metrics were measured; said first when not on the exported weights
    (the run may not have measured the exported step: `eval.every_n_validations`, `f2tune validate`)."""
    if not facts.metrics_source:
        return ""
    split = {"val": "validation", "test": "test"}.get(facts.metrics_split or "", facts.metrics_split or "")
    on = f" on {facts.metrics_samples} {split} samples" if facts.metrics_samples else f" on the {split} data"
    at = f" at step {facts.metrics_step}" if facts.metrics_step is not None else ""
    text = (
        f"Measured by the run{on}{at} (`{facts.metrics_source}/metrics.json` in the run folder), decoding as "
        "the usage code below does.\n\n"
    )
    if facts.step is not None and facts.metrics_step is not None and facts.metrics_step != facts.step:
        text = (
            f"**Not measured on these weights**: the run measured no metrics at step {facts.step}, the step "
            f"exported; the latest it measured, at step {facts.metrics_step}, follow. {text}"
        )
    return text


def _example_prompt(facts: CardFacts) -> str:
    """A trained prompt that runs as written: a region placeholder becomes a concrete region."""
    runnable = next((p for p in facts.prompts if REGION_PLACEHOLDER not in p), None)
    if runnable is not None:
        return runnable
    if facts.prompts:
        return facts.prompts[0].replace(REGION_PLACEHOLDER, EXAMPLE_REGION)
    return facts.tasks[0] if facts.tasks and TASKS[facts.tasks[0]].input == "none" else "<CAPTION>"


def _task_token(prompt: str) -> str:
    """The task token a prompt starts with, "" for a free-text prompt."""
    match = re.match(r"<[A-Z][A-Z_]*>", prompt)
    return match.group(0) if match and match.group(0) in TASKS else ""


def _usage_intro(facts: CardFacts) -> str:
    prompt = _example_prompt(facts)
    region = f" `{EXAMPLE_REGION}` is the image's middle half." if EXAMPLE_REGION in prompt else ""
    return f"{REPO_PLACEHOLDER_NOTE}The decoding settings are those the run's evaluation used for the task.{region}"


def _usage(facts: CardFacts, recipe: Recipe, adapter: bool) -> str:
    revision = f", revision={_python_string(facts.base_revision)}" if facts.base_revision else ""
    base = f"{_python_string(facts.base_model)}{revision}"
    load = (
        "from peft import PeftModel\n"
        f"base = AutoModelForImageTextToText.from_pretrained({base})\n"
        f"model = PeftModel.from_pretrained(base, {REPO_PLACEHOLDER})\n"
        f"processor = AutoProcessor.from_pretrained({base})\n"
        if adapter
        else f"model = AutoModelForImageTextToText.from_pretrained({REPO_PLACEHOLDER})\n"
        f"processor = AutoProcessor.from_pretrained({REPO_PLACEHOLDER})\n"
    )
    prompt = _example_prompt(facts)
    task = _task_token(prompt)
    decoding = Decoding.of(TASKS[task], recipe.eval)
    answer = (
        "text = processor.batch_decode(ids, skip_special_tokens=False)[0]\n"
        f'print(processor.post_process_generation(text, task="{task}", image_size=image.size))\n'
        if task
        else "print(processor.batch_decode(ids, skip_special_tokens=True)[0])  # a free-text answer\n"
    )
    return (
        "from PIL import Image\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        f"{load}"
        'image = Image.open("image.jpg")\n'
        f'inputs = processor(text={_python_string(prompt)}, images=image, return_tensors="pt")\n'
        f"ids = model.generate(**inputs, max_new_tokens={decoding.max_new_tokens}, num_beams={decoding.num_beams}, "
        f"no_repeat_ngram_size={decoding.no_repeat_ngram_size})\n"
        f"{answer}"
    )


def _python_string(text: str) -> str:
    """`text` as a Python string literal (a free-text prompt may hold quotes, backslashes or line
    breaks; a JSON string is a valid Python one)."""
    return json.dumps(text, ensure_ascii=False)
