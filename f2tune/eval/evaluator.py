"""Evaluation from generated text: generate with each task's decoding, parse, score, keep records.

One `Evaluator` serves validation during fit and `f2tune validate|test`. Each task of the data gets
its metric from the task table (or the recipe's `eval.metric`) and its own decoding settings, so a
caption never generates like a detection list and vice versa.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Florence2Processor

from f2tune.config import EvalConfig
from f2tune.errors import RecipeError
from f2tune.eval.generate import MODEL_INPUTS, Generation, generate
from f2tune.eval.lockstep import agreed_calls, stand_in_inputs
from f2tune.eval.metrics import build_metric
from f2tune.eval.scores import parse_generation, special_ids
from f2tune.tasks import TASKS, TaskSpec, parse_output
from f2tune.tasks.schema import Annotation

TEXT_METRICS = {"cer", "wer", "exact_match", "anls", "vqa_accuracy", "cider", "bleu4", "rougeL"}
COMPANIONS: dict[str, tuple[str, ...]] = {
    "cider": ("bleu4", "rougeL"),
    "vqa_accuracy": ("exact_match", "anls"),
    "cer": ("wer",),
    "grounding_acc": ("grounding_acc_merged",),
}
"""With `eval.metric: auto`, the metrics reported next to a task's main one (captions get BLEU-4 and
ROUGE-L, answers exact match and ANLS (DocVQA's metric), OCR word error rate, phrase grounding its
Recall@1 under the MERGED-BOXES protocol beside ANY-BOX's)."""


def task_label(task: str) -> str:
    """`<OD>` -> `OD`, free text -> `custom`: the task's part of metric names (`val/OD/map`)."""
    return task.strip("<>") or "custom"


BOX_METRICS = {"coco_map", "grounding_acc", "grounding_acc_merged"}


def check_metric_fits(tasks: Iterable[str], config: EvalConfig) -> None:
    """Refuse an `eval.metric` that cannot score a task's answers: boxes compared for a task that
    answers in text scored every validation n/a (COCO's -1), which a monitor on it then ranked;
    masks for a task without polygons compared empty masks. (Text metrics fit every task: a
    structured answer is compared by its labels' text.)"""
    if config.metric != "miou" and config.metric not in BOX_METRICS:
        return
    kind = "masks" if config.metric == "miou" else "boxes"
    for task in sorted(tasks):
        spec = TASKS[task]
        if not (spec.post_processing == "polygons" if kind == "masks" else spec.answers_with_boxes):
            raise RecipeError(
                f"eval.metric is {config.metric}, which compares {kind}, but {spec.name} does not answer with "
                f"{kind}: use eval.metric: auto (each task's own metric) or one that fits every evaluated task"
            )


def metrics_for(task: str, config: EvalConfig) -> list[str]:
    """The metrics a run computes for `task`: `eval.metric`, or with `auto` the task's own and its companions."""
    if config.metric == "none":
        return []
    if config.metric != "auto":
        return [config.metric]
    main = TASKS[task].metric
    return [main, *COMPANIONS.get(main, ())]


def metric_options(spec: TaskSpec, name: str) -> dict[str, bool]:
    """What a box metric needs to know of the task it scores: whether its answers name each phrase
    of a grounded caption (grounding accuracy matches boxes to phrases by name), and whether they
    carry labels at all (`<REGION_PROPOSAL>`: class-agnostic mAP, whatever labels the reference has)."""
    if name.startswith("grounding_acc"):
        return {"by_name": spec.post_processing == "phrase_grounding"}
    if name == "coco_map":
        return {"class_agnostic": spec.post_processing == "bboxes"}
    return {}


@dataclass(frozen=True, order=True)
class Decoding:
    """A task's decoding settings with the recipe's overrides applied."""

    max_new_tokens: int
    num_beams: int
    no_repeat_ngram_size: int

    @classmethod
    def of(cls, spec: TaskSpec, config: EvalConfig) -> Decoding:
        return cls(
            config.max_new_tokens or spec.max_new_tokens,
            config.num_beams or spec.num_beams,
            spec.no_repeat_ngram_size if config.no_repeat_ngram_size is None else config.no_repeat_ngram_size,
        )


class Evaluator(nn.Module):
    """Holds one torchmetrics metric per task (synced across processes by torchmetrics)."""

    def __init__(self, tasks: Iterable[str], config: EvalConfig, processor: Florence2Processor) -> None:
        super().__init__()
        self.config = config
        self.processor = processor
        self.metric_names = {task: metrics_for(task, config) for task in sorted(set(tasks))}
        self.metrics = nn.ModuleDict(
            {
                _key(task, name): build_metric(name, **metric_options(TASKS[task], name))
                for task, names in self.metric_names.items()
                for name in names
            }
        )
        self._ids = special_ids(processor.tokenizer)
        self.seen: dict[str, int] = {}

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Evaluator:
        """Moves the metric states where the model goes, and never converts their dtype.

        Lightning's `bf16-true` and `16-true` convert the whole LightningModule with
        `.to(dtype=...)`, which torchmetrics lets through to the states (it guards `.half()` and
        the like only): a count in bfloat16 stops at 256 (`256 + 1` rounds back to 256), so every
        mean over more samples came out wrong, and fractional sums lost digits from the first."""

        def same_dtype(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device=fn(tensor.new_empty(0)).device)

        return super()._apply(same_dtype, recurse)

    def update(self, model: nn.Module, batch: dict[str, Any], lockstep: bool = False) -> list[dict[str, Any]]:
        """Generate for the samples of `batch` within each task's `max_samples` quota, update the
        metrics, and return one record per evaluated sample. `lockstep`: the weights are sharded
        across processes, which must then make the same `generate` calls (`f2tune.eval.lockstep`);
        `batch` may then hold no sample."""
        chosen = self._within_quotas(batch.get("tasks", []))
        generations = self._generate(model, batch, chosen, lockstep)
        records: list[dict[str, Any]] = []
        for task, rows in chosen.items():
            spec = TASKS[task]
            predictions, references = [], []
            for row in rows:
                size = batch["image_sizes"][row]
                prediction = parse_generation(spec, generations[row], size, self._ids)
                reference = batch["references"][row] or parse_output(spec, batch["targets"][row], size)
                predictions.append(prediction)
                references.append(reference)
                records.append(
                    {
                        "id": batch["ids"][row],
                        "task": task,
                        "prompt": batch["prompts"][row],
                        "target": batch["targets"][row],
                        "generated": generations[row].text,
                        "prediction": prediction,
                        "reference": reference,
                    }
                )
            self._update_metric(task, predictions, references, [batch["image_sizes"][r] for r in rows])
        return records

    def _within_quotas(self, tasks: list[str]) -> dict[str, list[int]]:
        """Rows to evaluate per task: those with metrics, up to each task's remaining quota."""
        chosen = {}
        for task, rows in _rows_by_task(tasks).items():
            quota = self.config.max_samples - self.seen.get(task, 0)
            if not self.metric_names.get(task) or quota <= 0:
                continue
            chosen[task] = rows[:quota]
            self.seen[task] = self.seen.get(task, 0) + len(chosen[task])
        return chosen

    def _generate(
        self, model: nn.Module, batch: dict[str, Any], chosen: dict[str, list[int]], lockstep: bool
    ) -> dict[int, Generation]:
        """One `generate` call per distinct decoding setting, not per task: `<OD>`, `<OCR>` and
        `<REGION_PROPOSAL>` rows (512 tokens, 3 beams, no n-gram block) decode together. Token
        probabilities are computed for a call when any of its tasks answers with boxes."""
        rows: dict[Decoding, list[int]] = {}
        scored: dict[Decoding, bool] = {}
        for task, task_rows in chosen.items():
            decoding = Decoding.of(TASKS[task], self.config)
            rows.setdefault(decoding, []).extend(task_rows)
            scored[decoding] = scored.get(decoding, False) or TASKS[task].answers_with_boxes
        calls = agreed_calls(scored) if lockstep else list(scored.items())
        generations: dict[int, Generation] = {}
        for decoding, with_probabilities in calls:
            call_rows = rows.get(decoding, [])
            sub = {k: batch[k][torch.tensor(call_rows)] for k in MODEL_INPUTS} if call_rows else stand_in_inputs(batch)
            generated = generate(model, self.processor, sub, decoding, with_probabilities, synced=lockstep)
            generations.update(zip(call_rows, generated))  # a stand-in's output is dropped
        return generations

    def _update_metric(
        self, task: str, predictions: list[Annotation], references: list[Annotation], sizes: list[tuple[int, int]]
    ) -> None:
        for name in self.metric_names[task]:
            metric = self.metrics[_key(task, name)]
            if name == "miou":
                metric.update(predictions, references, sizes)
            elif name in TEXT_METRICS:
                metric.update([_as_text(p) for p in predictions], [_as_text(r) for r in references])
            else:
                metric.update(predictions, references)

    def compute(self) -> dict[str, float]:
        """`TASK/metric` -> value for every task that saw samples (on this or another process)."""
        results: dict[str, float] = {}
        for task, names in self.metric_names.items():
            for name in names:
                metric = self.metrics[_key(task, name)]
                if metric.update_count == 0 and not _distributed():
                    continue
                with warnings.catch_warnings():
                    # a process that saw none of the task's samples still takes part in the sync of the
                    # states, where torchmetrics warns of a compute "before the update": not so, the
                    # other processes' updates count
                    warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method")
                    computed = metric.compute()
                for key, value in computed.items():
                    results[f"{task_label(task)}/{key}"] = float(value)
        return results

    def reset(self) -> None:
        self.seen = {}
        for metric in self.metrics.values():
            metric.reset()


def _key(task: str, metric: str) -> str:
    """ModuleDict key of one task's metric (no dots allowed there)."""
    return f"{task_label(task)}-{metric}"


def _rows_by_task(tasks: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for row, task in enumerate(tasks):
        groups.setdefault(task, []).append(row)
    return groups


def _as_text(annotation: Annotation) -> Annotation:
    """Text metrics read `text` (and `answers`); OCR with regions compares its lines in order."""
    if "text" in annotation or "answers" in annotation:
        return annotation
    return {"text": "\n".join(annotation.get("labels", []))}


def _distributed() -> bool:
    """Whether other processes may hold samples (then every process must take part in compute)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()
