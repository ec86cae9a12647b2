"""`f2tune validate|test`: task metrics of a run's checkpoint (or of the base model) on its
validation or test data, with per-sample predictions written beside the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException

from f2tune.config import Recipe
from f2tune.errors import SIGNAL_STATUS, RecipeError, RunError, RunStopped
from f2tune.export.atomic import check_writable
from f2tune.log import say
from f2tune.train.locate import checkpoint_step, last_checkpoint, recorded_best, run_checkpoint
from f2tune.train.resume import check_evaluated_checkpoint
from f2tune.train.setup import assemble, run_dir_of

Stage = Literal["validate", "test"]


def evaluate(recipe: Recipe, stage: Stage, checkpoint: str = "best") -> dict[str, float]:
    """Metrics of `checkpoint` (`best`, `last`, `none` for the untrained model, or a path)."""
    split = "val" if stage == "validate" else "test"
    if not getattr(recipe.data, split):
        raise RecipeError(f"data.{split} is empty: nothing to {stage} (add sources under data.{split})")
    run_dir = run_dir_of(recipe)
    ckpt_path = resolve_checkpoint(run_dir, checkpoint)
    if ckpt_path is not None:
        check_evaluated_checkpoint(recipe, ckpt_path)
    # as fit checks its run folder: else a folder the user may not write stops the command only when
    # the predictions are written, after the whole evaluation
    check_writable(
        run_dir / "predictions", "the run's predictions folder (under trainer.output_dir / trainer.run_name)"
    )
    pl.seed_everything(recipe.trainer.seed, workers=True, verbose=False)
    trainer, module, datamodule = assemble(recipe, run_dir, stage=stage)
    module.evaluated_step = checkpoint_step(ckpt_path)  # Lightning restores the weights, not the step
    run = trainer.validate if stage == "validate" else trainer.test
    try:
        results = run(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=True)
    except SIGTERMException:  # Lightning's stop for SIGTERM, a SystemExit: else the command exits 0
        raise RunStopped(
            f"{stage} stopped by SIGTERM before its last batch: no metrics were computed; run it again",
            SIGNAL_STATUS["SIGTERM"],
        ) from None
    written = module.predictions_folder or run_dir / "predictions"
    say(f"{stage}: checkpoint {ckpt_path or 'none (untrained weights)'}; predictions and metrics in {written}")
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> str | None:
    """The checkpoint file to evaluate: `none` (untrained weights), `best`/`last` of the run, or a path."""
    if checkpoint == "none":
        return None
    if checkpoint in ("best", "last"):
        path = run_checkpoint(run_dir, checkpoint)
        if checkpoint == "best":
            say(f"--checkpoint best: {why_this_one(path, last_checkpoint(run_dir))}")
        return str(path)
    if not Path(checkpoint).is_file():
        raise RunError(f"--checkpoint: {checkpoint} is neither best, last, none nor a checkpoint file")
    return checkpoint


def why_this_one(path: Path, last: Path) -> str:
    """Which checkpoint `best` resolved to, and why the run's `last` when it is no best one."""
    monitor, best = recorded_best(last)
    if path != last:
        return f"{path}, the best by {monitor}"
    if monitor is None:
        why = "the run kept no best checkpoint (it had no data.val)"
    elif best is None:
        why = f"the run kept no best checkpoint by {monitor} (trainer.save_top_k: 0, or no validation before it ended)"
    else:
        why = f"its best checkpoint {best} is not in {path.parent}"
    return f"{why}; evaluating {path} instead"
