"""What `f2tune fit --resume` may change: the recipe given now against the one the checkpoint holds.

Most settings may change between the parts of a run (more steps, other data, a lower learning
rate), and the log says which did. Those that shape the weights or the optimizer's state may not:
the checkpoint could not be loaded into the model or optimizer they build, and Lightning would
fail deep inside its restore with a page of size mismatches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from f2tune.config import Recipe
from f2tune.errors import RunError
from f2tune.log import say
from f2tune.recipe import dump_recipe
from f2tune.train.locate import checkpoint_contents

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


@dataclass
class ResumePoint:
    """What `fit` needs to know of the checkpoint a run resumes from (read once)."""

    step: int = 0
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    validates_past_max_steps: bool = False
    """Stopped in its validation at `trainer.max_steps` (`checkpoint_before_validation`): Lightning,
    finding the step limit reached, would skip that validation (`FinishValidation` runs it)."""


def resume_point(recipe: Recipe, checkpoint: Path) -> ResumePoint:
    """Where `recipe` resumes from `checkpoint`; a `RunError` if a setting that may not change did,
    or if nothing is left to do: training is done and so was the end of the fit (`fit_unfinished`)."""
    if not checkpoint.is_file():  # the launching process has said so
        return ResumePoint()
    saved = checkpoint_contents(checkpoint)
    step = int(saved.get("global_step", 0))
    before = saved.get("hyper_parameters", {}).get("recipe")
    if before is None:  # not written by f2tune fit: nothing to compare with
        return ResumePoint(step)
    changes = recipe_changes(before, recipe.model_dump(mode="json"))
    if fixed := model_changes(changes):
        raise RunError(
            f"--resume: {fixed}. A resumed run keeps the model, its adaptation and LoRA settings (they "
            "shape the checkpoint's weights and optimizer state): undo the change, or "
            "start a new run with trainer.run_name=NEW_NAME (from this run's export, as its model.name_or_path "
            "or model.adapter)"
        )
    pending = validation_pending(saved)
    max_steps, max_epochs = recipe.trainer.max_steps, recipe.trainer.max_epochs
    if not (pending or fit_unfinished(checkpoint.parent.parent)):
        if 0 < max_steps <= step:
            raise RunError(
                f"--resume: the run is at step {step} ({checkpoint}) and trainer.max_steps is {max_steps}: "
                "nothing is left to train; give a larger trainer.max_steps to train on"
            )
        if max_epochs is not None and (done := epochs_finished(saved)) >= max_epochs:
            raise RunError(
                f"--resume: the run has finished {done} epoch(s) ({checkpoint}) and trainer.max_epochs is "
                f"{max_epochs}: nothing is left to train; give a larger trainer.max_epochs to train on"
            )
    return ResumePoint(step, changes, validates_past_max_steps=pending and 0 < max_steps <= step)


def validation_pending(saved: dict[str, Any]) -> bool:
    """Whether a checkpoint was saved during one of fit's validations, as if it had not begun
    (`checkpoint_before_validation`: one batch fetched, none processed), so such a run has not
    finished. Read from the validation's own counts: Lightning's totals, which it tests for
    resuming mid-evaluation, stay one batch ahead for the rest of the epoch once it has."""
    loop = saved.get("loops", {}).get("fit_loop", {})
    current = loop.get("epoch_loop.val_loop.batch_progress", {}).get("current", {})
    return current.get("started", 0) == current.get("ready", 0) == 1 and current.get("processed", 0) == 0


def unfinished_marker(run_dir: Path) -> Path:
    """The file that says a part of the run has begun training and its fit has not ended: the
    checkpoint of a run stopped at its last step, or in the validation or export after it, is at
    the step limit like that of a finished run; `--resume` finishes the one, refuses the other."""
    return run_dir / ".fit-unfinished"  # not in checkpoints/: Lightning warns of a new run's that is not empty


def fit_unfinished(run_dir: Path) -> bool:
    """Whether the run's fit began training and has not ended (`unfinished_marker`)."""
    return unfinished_marker(run_dir).is_file()


class RecipeRecord(pl.Callback):
    """Writes the recipe of this part of the run beside it and marks the fit unfinished, once
    (`write`): for a resumed run when training begins (`on_train_start`; `fit` calls `write` after a
    fit that had no step left to train). Written before, a resumed part refused by Lightning's start
    (a validation interval longer than the new epoch) left its never-trained recipe as config.yaml,
    and the next resume moved that over the recipe of the steps before it."""

    def __init__(self, recipe: Recipe, run_dir: Path, resumed: ResumePoint | None = None) -> None:
        self.recipe, self.run_dir, self.resumed = recipe, run_dir, resumed
        self.written = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write()

    def write(self) -> None:
        """The recipe as config.yaml (the earlier part's kept, `record_changes`) and the marker; once."""
        if self.written:
            return
        self.written = True
        if self.resumed is not None:
            record_changes(self.run_dir, self.resumed.changes, self.resumed.step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_recipe(self.recipe))
        unfinished_marker(self.run_dir).write_text("f2tune fit has not ended: --resume finishes it\n")
        say(f"run directory: {self.run_dir} (effective recipe saved as config.yaml)")


class FinishValidation(pl.Callback):
    """Runs the validation a run was stopped in at its last step (`trainer.max_steps`) when it is
    resumed. Lightning, finding the step limit reached, would skip the fit's loop, and that
    validation with it: no metrics of the final weights, no best checkpoint at that step, and a
    last.ckpt still saying the validation is to run. A step past the checkpoint's (`step`) is allowed
    until the validation has run (Lightning resumes it before any training), then the limit is the
    recipe's again."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._limit = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._limit = trainer.fit_loop.epoch_loop.max_steps  # after configure_optimizers: its schedule is the recipe's
        trainer.fit_loop.epoch_loop.max_steps = self.step + 1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.fit_loop.epoch_loop.max_steps = self._limit

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        """Lightning resumes the validation only where the recipe's schedule puts one at this step
        and batch; a changed `trainer.val_check_interval`, batch size or training data moves it, and
        Lightning would train a step past the limit instead: refused before that step."""
        if trainer.fit_loop.epoch_loop.max_steps != self._limit:
            raise RunError(
                f"--resume: the run was stopped in its validation at step {self.step}, its last, and this recipe "
                "validates elsewhere (a changed validation interval, batch size or training data), so that "
                "validation would not run but a step past trainer.max_steps would: resume with the recipe as it "
                "was (the run's config.until-step<N>.yaml, or its config.yaml if none), or raise trainer.max_steps"
            )


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


def record_changes(run_dir: Path, changes: list[tuple[str, Any, Any]], step: int) -> None:
    """Say what changed since the checkpoint (of `step`), and move the earlier part's config.yaml
    to `config.until-step<N>.yaml` before this part saves its own, so the recipe of every part stays
    beside the run. An existing `config.until-step<N>.yaml` is kept: it holds the recipe that
    trained up to step N, and config.yaml one of a later part that trained no step past it."""
    if not changes:
        return
    earlier, kept = run_dir / "config.yaml", ""
    until = earlier.with_name(f"config.until-step{step}.yaml")
    if until.is_file():
        kept = f"; the recipe that trained up to step {step} stays {until.name}"
    elif earlier.is_file():
        earlier.replace(until)
        kept = f"; that part's recipe is kept as {until.name}"
    described = ", ".join(f"{key} {_short(old)} -> {_short(new)}" for key, old, new in changes)
    say(f"--resume: changed since step {step}: {described}{kept}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
