"""What a model card states, gathered from a run: its base, its data, its measured metrics.

Shared by the export at the end of fit and by `f2tune export` on any checkpoint later, so both
write the same card. Metrics come from the files the run wrote (`predictions/*/metrics.json`),
not from memory, so a later export reports what was measured rather than nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from f2tune.config import TINY_MODEL, DataSource, HfDatasetSource, Recipe
from f2tune.data.datamodule import Florence2DataModule
from f2tune.data.formats import source_name
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.export.model_card import REGION_PLACEHOLDER, CardFacts, DataRow
from f2tune.hub.names import is_hub_id
from f2tune.log import warn
from f2tune.model.loading import TINY_SEED, base_model_name, base_model_revision
from f2tune.tasks import TASKS
from f2tune.testing.tiny import save_tiny
from f2tune.train.prediction_folders import FOLDER_STEP

_MIT_BASE = re.compile(r"^(microsoft|florence-community)/Florence-2-(base|large)(-ft)?$", re.IGNORECASE)


def loadable_base(recipe: Recipe, run_dir: Path) -> str:
    """The base model an adapter names: the recipe's, or for the tiny model a saved copy beside
    the run (an adapter must name something `from_pretrained` can load); a local folder as an
    absolute path, which loads from any working directory."""
    base = base_model_name(recipe.model)
    if base == TINY_MODEL:
        folder = run_dir / "base_model"
        if not (folder / "config.json").is_file():
            save_tiny(folder, seed=TINY_SEED)
        base = str(folder.resolve())
    elif Path(base).expanduser().is_dir():  # a local base as given (`./florence`) loads only from where it was run
        base = str(Path(base).expanduser().resolve())
    return base


def gather_facts(
    recipe: Recipe,
    run_dir: Path,
    kind: str,
    datamodule: Florence2DataModule | None = None,
    step: int | None = None,
    checkpoint: str | None = None,
) -> CardFacts:
    """Card facts for an export of `recipe`'s run; reads the training data if `datamodule` is None.

    `step`: prefer metrics measured at that step (the exported checkpoint's); else the latest.
    """
    if checkpoint is None and step is not None:  # the end of fit exports the weights in memory
        checkpoint = f"step {step} (final weights)"
    base = loadable_base(recipe, run_dir)
    facts = CardFacts(
        base_model=base,
        kind=kind,
        base_revision=base_model_revision(recipe.model) if is_hub_id(base) else None,
        license=recipe.export.license or known_license(base),
        checkpoint=checkpoint,
        step=step,
    )
    names = [source_name(s) for s in recipe.data.train]
    try:
        if datamodule is None:
            datamodule = Florence2DataModule(recipe.data, seed=recipe.trainer.seed)
            datamodule.read_splits(("train",))  # the card counts the training data only
    except DataError as err:
        warn(f"model card: training data not readable now, sizes left out ({str(err).splitlines()[0]})")
        facts.datasets = [DataRow(name) for name in names]
    else:
        samples = [s for part in datamodule.train_parts for s in part.samples]
        facts.train_samples = len(samples)
        facts.datasets = [
            DataRow(name, sorted({s.task for s in part.samples}), len(part))
            for name, part in zip(names, datamodule.train_parts)
        ]
        facts.prompts = sorted({shown_prompt(s) for s in samples})[:10]
        facts.tasks = sorted({s.task for s in samples if s.task})
        facts.hub_datasets = hub_dataset_ids(recipe.data.train)
    found = measured_metrics(run_dir, step)
    if found is not None:
        facts.metrics_source, facts.metrics = found
        split, at = FOLDER_STEP.split(Path(facts.metrics_source).name)[:2]
        facts.metrics_split, facts.metrics_step = split, int(at)
        facts.metrics_samples = evaluated_samples(run_dir / facts.metrics_source)
    return facts


def known_license(base: str) -> str | None:
    """The license of a base whose terms f2tune knows: Microsoft's Florence-2 weights (MIT), as
    Microsoft publishes them and as florence-community converted them; None for any other base."""
    return "mit" if _MIT_BASE.match(base) else None


def shown_prompt(sample: Sample) -> str:
    """The prompt a sample trains, as a user of the model would write it. Structured samples build
    theirs from the annotation when loaded (their `prompt` is empty): the task token, then the text
    it reads, or placeholders for a region, whose location tokens depend on each image's size."""
    if sample.prompt or sample.reference is None:
        return sample.prompt
    spec = TASKS[sample.task]
    if spec.input == "region":
        return spec.token + REGION_PLACEHOLDER
    if spec.input == "query":
        return spec.token + str(sample.reference.get("query", ""))
    return spec.token


def hub_dataset_ids(sources: list[DataSource]) -> list[str]:
    """The `hf_dataset` sources read from the Hub: their path is no local folder and has the form of
    a Hub id (the Hub refuses a card whose `datasets` names a path, e.g. a folder since moved)."""
    ids = [
        s.path
        for s in sources
        if isinstance(s, HfDatasetSource) and is_hub_id(s.path) and not Path(s.path).expanduser().exists()
    ]
    return list(dict.fromkeys(ids))


def measured_metrics(run_dir: Path, step: int | None = None) -> tuple[str, dict[str, float]] | None:
    """(folder relative to the run, metrics) of the run's metrics.json at `step`, else the latest."""
    files = [p for p in (run_dir / "predictions").glob("*/metrics.json") if FOLDER_STEP.search(p.parent.name)]
    if not files:
        return None

    def order(path: Path) -> tuple[bool, int, float]:
        at = int(FOLDER_STEP.search(path.parent.name).group(1))
        return (at == step, at, path.stat().st_mtime)

    chosen = max(files, key=order)
    metrics = {k: float(v) for k, v in json.loads(chosen.read_text()).items()}
    return f"predictions/{chosen.parent.name}", metrics


def evaluated_samples(folder: Path) -> int | None:
    """How many samples the metrics of `folder` were measured on: the distinct samples of its
    per-process prediction files (a distributed sampler repeats a few to even out the processes;
    `eval.max_samples` may have measured a part of the split). None where none is there."""
    seen: set[tuple[str, str]] = set()
    for path in folder.glob("rank*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                seen.add((str(record.get("id")), str(record.get("prompt"))))
    return len(seen) or None
