"""What `f2tune fit --resume` may change: the recipe given now against the one the checkpoint holds.

Most settings may change between the parts of a run (more steps, other data, a lower learning
rate), and the log says which did. Those that shape the weights or the optimizer's state may not:
the checkpoint could not be loaded into the model or optimizer they build, and Lightning would
fail deep inside its restore with a page of size mismatches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from f2tune.config import Recipe
from f2tune.errors import RunError
from f2tune.log import say
from f2tune.train.locate import checkpoint_contents, checkpoint_step, last_checkpoint

FIXED_ON_RESUME = (
    "model.name_or_path", "model.adapter", "model.revision", "adaptation.", "lora.r", "lora.alpha",
    "lora.target", "lora.use_dora", "lora.use_rslora",
)  # fmt: skip
"""Recipe keys (or prefixes, ending in a dot) a resumed run must keep: the model and which of its
weights train (their shapes, what a LoRA weight means, and so the optimizer's parameter groups).
The optimizer's settings may change: the resumed run uses them (`follow_recipe_settings`)."""


def recipe_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, value before, value after) for every leaf that differs; lists compare whole."""
    changes = []
    for key in list(before) + [k for k in after if k not in before]:
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += recipe_changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append((f"{prefix}{key}", old, new))
    return changes


def check_resume(recipe: Recipe, checkpoint: Path) -> list[tuple[str, Any, Any]]:
    """The changes from the checkpoint's recipe to `recipe`; a `RunError` if one may not change."""
    if not checkpoint.is_file():  # the launching process has said so
        return []
    saved = checkpoint_contents(checkpoint)
    before = saved.get("hyper_parameters", {}).get("recipe")
    if before is None:  # not written by f2tune fit: nothing to compare with
        return []
    changes = recipe_changes(before, recipe.model_dump(mode="json"))
    if fixed := model_changes(changes):
        raise RunError(
            f"--resume: {fixed}. A resumed run keeps the model, its adaptation and LoRA settings (they "
            "shape the checkpoint's weights and optimizer state): undo the change, or "
            "start a new run with trainer.run_name=NEW_NAME (from this run's export, as its model.name_or_path "
            "or model.adapter)"
        )
    step, max_steps, max_epochs = int(saved.get("global_step", 0)), recipe.trainer.max_steps, recipe.trainer.max_epochs
    if 0 < max_steps <= step:
        raise RunError(
            f"--resume: the run is at step {step} ({checkpoint}) and trainer.max_steps is {max_steps}: nothing "
            "is left to train; give a larger trainer.max_steps to train on"
        )
    if max_epochs is not None and (done := epochs_finished(saved)) >= max_epochs:
        raise RunError(
            f"--resume: the run has finished {done} epoch(s) ({checkpoint}) and trainer.max_epochs is {max_epochs}: "
            "nothing is left to train; give a larger trainer.max_epochs to train on"
        )
    return changes


def epochs_finished(saved: dict[str, Any]) -> int:
    """The training epochs a checkpoint's run has gone through to the end, from Lightning's loop state.

    f2tune saves inside an epoch's last batch (validation end, `FinalStep`, every N steps), before
    Lightning counts the epoch as processed: an epoch whose last batch was trained counts as finished
    here, as it does when Lightning restores the checkpoint (it then trains nothing and exits).
    """
    loop = saved.get("loops", {}).get("fit_loop", {})
    epochs = loop.get("epoch_progress", {}).get("current", {})
    batches = loop.get("epoch_loop.batch_progress", {})
    processed = int(epochs.get("processed", 0))
    last_batch_trained = batches.get("is_last_batch") and batches.get("current", {}).get("completed", 0) > 0
    return processed + int(bool(last_batch_trained) and epochs.get("started", 0) > processed)


def model_changes(changes: list[tuple[str, Any, Any]]) -> str:
    """The changes of `FIXED_ON_RESUME` keys among `changes`, described ("" for none)."""
    fixed = [c for c in changes if any(c[0] == k or (k.endswith(".") and c[0].startswith(k)) for k in FIXED_ON_RESUME)]
    return "; ".join(f"{key} was {old!r}, is now {new!r}" for key, old, new in fixed)


def check_evaluated_checkpoint(recipe: Recipe, checkpoint: str) -> None:
    """Refuse to evaluate `checkpoint` under a recipe whose model or adaptation differs from the one
    it was trained with: a LoRA recipe over a full run's checkpoint (or another LoRA target) loaded
    none of its weights and scored the untrained model as the checkpoint; other changes failed with
    a page of state-dict mismatches."""
    before = checkpoint_contents(checkpoint).get("hyper_parameters", {}).get("recipe")
    if before is None:
        return
    if fixed := model_changes(recipe_changes(before, recipe.model_dump(mode="json"))):
        raise RunError(
            f"{checkpoint} was trained under another model or adaptation than this recipe's: {fixed}. Its "
            "weights only load into the model they were trained in: undo the change (the run's config.yaml "
            "holds its recipe)"
        )


def record_changes(run_dir: Path, changes: list[tuple[str, Any, Any]]) -> None:
    """Say what changed since the checkpoint, and move the earlier part's config.yaml to
    `config.until-step<N>.yaml` (N: the step that part ended at) before this part saves its own,
    so the recipe of every part stays beside the run."""
    if not changes:
        return
    step = checkpoint_step(last_checkpoint(run_dir))
    earlier, kept = run_dir / "config.yaml", ""
    if earlier.is_file():
        earlier.replace(earlier.with_name(f"config.until-step{step}.yaml"))
        kept = f"; that part's recipe is kept as config.until-step{step}.yaml"
    described = ", ".join(f"{key} {_short(old)} -> {_short(new)}" for key, old, new in changes)
    say(f"--resume: changed since step {step}: {described}{kept}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
