"""`f2tune fit`: recipe -> data check -> model -> Lightning fit -> export -> summary.

Every process of a multi-process run executes this same function (Lightning re-launches the
command per device); steps that write shared files are guarded to run on global rank 0 only.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from f2tune.config import Recipe
from f2tune.data.datamodule import Florence2DataModule
from f2tune.errors import RecipeError, RunError
from f2tune.export.atomic import check_replaceable, check_writable
from f2tune.export.checkpoint import export_checkpoint
from f2tune.export.facts import gather_facts
from f2tune.export.writer import export_kind, export_model
from f2tune.hub.push import PushError, check_push_target, push_folder
from f2tune.log import say, warn
from f2tune.train.guards import oom_advice
from f2tune.train.locate import last_checkpoint
from f2tune.train.module import Florence2Module
from f2tune.train.plots import plot_loss_curves
from f2tune.train.resume import FinishValidation, RecipeRecord, resume_point, unfinished_marker
from f2tune.train.setup import assemble, build_trainable_model, run_dir_of
from f2tune.train.stopping import StopOnRequest
from f2tune.train.summary import print_summary
from f2tune.train.trainer import best_checkpoints


@dataclass
class FitResult:
    """What a fit produced, for the summary and for callers of the Python API."""

    run_dir: Path
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    export_dir: Path | None = None
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    loss_curve: Path | None = None
    exported: str = "final weights"
    """What the export holds: the final weights or the best checkpoint (`export.weights`)."""
    seconds: float = 0.0


def fit(
    recipe: Recipe,
    resume: bool = False,
    extra_callbacks: list[pl.Callback] | None = None,
    resumes_on_restart: bool = False,
) -> FitResult:
    """Train as the recipe says; with `resume`, continue from `<run dir>/checkpoints/last.ckpt`.
    `resumes_on_restart`: the command continues the run when started again (`--auto-resume`), so
    that SLURM's requeue signal may requeue the job (`f2tune.train.requeue`)."""
    started = time.perf_counter()
    run_dir = run_dir_of(recipe)
    launching = _is_launching_process()
    if launching:
        check_writable(run_dir, "the run folder (trainer.output_dir / trainer.run_name)")
        settings = recipe.trainer
        if settings.image_feature_cache_dir and settings.image_feature_cache_disk_gb > 0:
            check_writable(Path(settings.image_feature_cache_dir), "trainer.image_feature_cache_dir")
        _check_run_dir(run_dir, resume)
        if recipe.export.enabled:
            _check_export_dir(export_dir_of(recipe, run_dir), run_dir)
            check_replaceable(export_dir_of(recipe, run_dir), "export")
            if recipe.export.push_to:
                check_push_target(recipe.export.push_to, "export.push_to")
    resumed = resume_point(recipe, last_checkpoint(run_dir)) if resume else None
    pl.seed_everything(recipe.trainer.seed, workers=True, verbose=False)

    new_folder = launching and not run_dir.exists()
    record = RecipeRecord(recipe, run_dir, resumed) if launching else None
    callbacks = [*(extra_callbacks or []), *([record] if record else [])]
    if resumed is not None and resumed.validates_past_max_steps:
        callbacks.append(FinishValidation(resumed.step))
    trainer, module, datamodule = assemble(recipe, run_dir, callbacks)
    _stop_callback(trainer).resumes_on_restart = resumes_on_restart
    if record is not None and not resume:  # only now: bad data or a monitor the run does not log leave no folder behind
        record.write()  # (a resumed run's, once it trains: `RecipeRecord`)

    result = FitResult(run_dir=run_dir)
    has_val = bool(recipe.data.val)
    with _removed_on_recipe_error(run_dir if new_folder else None, trainer), _stopped_on_request(trainer, run_dir):
        if has_val and recipe.eval.before_fit and not resume:
            result.metrics_before = _validate(trainer, module, datamodule)
            if trainer.received_sigterm:  # met at its last batch: Lightning ends the validation as usual
                raise SIGTERMException
        with oom_advice(), warnings.catch_warnings():
            # a batch whose every record was skipped skips its step on purpose (counted in data/skipped_records)
            warnings.filterwarnings("ignore", message=r"`training_step` returned `None`")
            if resume:  # the folder holds this run's own checkpoints: Lightning's warning about them is no news
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(last_checkpoint(run_dir)) if resume else None)
        if record is not None:  # a run resumed at its step limit (to finish its end) trains no step
            record.write()
        if has_val:  # a stop in it leaves the fit unfinished: --resume validates and exports
            result.metrics_after = _ended_with_validation(trainer, module) or _validate(trainer, module, datamodule)
    last = last_checkpoint(run_dir)
    if best := getattr(best_checkpoints(trainer), "best_model_path", None):  # Lightning's is made absolute
        result.best_checkpoint = str(last.parent / Path(best).name)
    result.last_checkpoint = str(last) if last.is_file() else None

    best = _best_to_export(recipe, result.best_checkpoint)
    exportable = None if best else _exportable_model(trainer, module, recipe)  # every rank, or none
    push_failed: PushError | None = None
    if recipe.export.enabled and trainer.is_global_zero:
        result.export_dir = export_run(exportable, module, recipe, run_dir, datamodule, result.metrics_after, best)
        result.exported = f"best checkpoint ({best.name})" if best else "final weights"
        if recipe.export.push_to:
            try:
                say(f"export: pushed to {push_folder(result.export_dir, recipe.export.push_to)}")
            except PushError as err:  # said after the summary: the run and its export are whole
                push_failed = err
    result.seconds = time.perf_counter() - started
    if trainer.is_global_zero:
        result.loss_curve = plot_loss_curves(run_dir / "logs" / "csv", run_dir / "loss_curve.png")
        print_summary(result, trainer)
        unfinished_marker(run_dir).unlink(missing_ok=True)  # the fit has ended: --resume has nothing left to do
    if push_failed is not None:
        raise PushError(f"export.push_to: {push_failed} (f2tune push uploads it again)") from None
    return result


def export_run(
    model: nn.Module | None,
    module: Florence2Module,
    recipe: Recipe,
    run_dir: Path,
    datamodule: Florence2DataModule,
    metrics: dict[str, float],
    checkpoint: Path | None = None,
) -> Path:
    """Write the export folder (global rank 0 only), return its path.

    `model` (the final weights) or, when given, `checkpoint` is exported, as `f2tune export` would.
    The card reports the metrics of the run's last validation (its `metrics.json`), else `metrics`.
    """
    target = export_dir_of(recipe, run_dir)
    if checkpoint is not None:
        export_checkpoint(checkpoint, target, datamodule=datamodule)
    else:
        step = module.trainer.global_step
        facts = gather_facts(recipe, run_dir, export_kind(recipe), datamodule=datamodule, step=step)
        if not facts.metrics:
            facts.metrics = metrics
        export_model(model, module.processor, recipe, target, facts)
    return target


def export_dir_of(recipe: Recipe, run_dir: Path) -> Path:
    """Where fit exports: `export.dir`, else the run folder's `export/`."""
    return Path(recipe.export.dir) if recipe.export.dir else run_dir / "export"


def _best_to_export(recipe: Recipe, best_checkpoint: str | None) -> Path | None:
    """The best checkpoint, where `export.weights: best` asks for it and training saved one."""
    if not (recipe.export.enabled and recipe.export.weights == "best"):
        return None
    if best_checkpoint is None:
        warn(
            "export.weights is best, but no validation during training saved a best checkpoint: "
            "the final weights are exported"
        )
        return None
    return Path(best_checkpoint)


def _ended_with_validation(trainer: pl.Trainer, module: Florence2Module) -> dict[str, float]:
    """The metrics of the validation training ended with, if it measured the final weights in full:
    validating them again would repeat it (minutes on a real validation set); else {}."""
    if module.validated_in_full_at != trainer.global_step:
        return {}
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def _validate(trainer: pl.Trainer, module: Florence2Module, datamodule: Florence2DataModule) -> dict[str, float]:
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def _exportable_model(trainer: pl.Trainer, module: Florence2Module, recipe: Recipe) -> nn.Module:
    """The trained model as one unsharded module on rank 0.

    Under FSDP the weights are sharded across processes: every process takes part in gathering
    the full state dict, and rank 0 loads it into a fresh copy of the model.
    """
    if not isinstance(trainer.strategy, FSDPStrategy):
        return module.model
    state = trainer.strategy.lightning_module_state_dict()
    if not trainer.is_global_zero:
        return module.model
    model = build_trainable_model(recipe)
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}, strict=False
    )
    return model


RUN_ENTRIES = ("checkpoints", "logs", "predictions", "base_model", "feature_cache", "config.yaml", "loss_curve.png")
"""What fit writes in its run folder, besides `export/` and the `config.until-step<N>.yaml` files."""


def _check_export_dir(target: Path, run_dir: Path) -> None:
    """Refuse an `export.dir` whose replacement (the export replaces its folder whole) would take the
    run's own files: the run folder, a folder above it, or one of the run's entries. Its check
    before training (`check_replaceable`) passes while the run folder is new, and the export was
    refused after the whole fit, leaving no export and no summary."""
    export, run = target.resolve(), run_dir.resolve()
    inside = export.relative_to(run).parts if export.is_relative_to(run) else ()
    if export == run or export in run.parents:
        where = "the run folder" if export == run else f"a folder above the run folder {run_dir}"
        lost = "the run itself (its checkpoints, logs and recipe)"
    elif inside and (inside[0] in RUN_ENTRIES or inside[0].startswith("config.until-step")):
        where = f"{'inside ' if len(inside) > 1 else ''}the run folder's {inside[0]}"
        lost = f"the run's {inside[0]}"
    else:
        return
    raise RecipeError(
        f"export.dir {target} is {where}: the export replaces its folder whole at the end of fit and would "
        f"delete {lost}. Give a folder outside the run folder, or leave export.dir unset (the export then goes "
        f"to {run_dir / 'export'})"
    )


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run by accident, refuse to resume nothing."""
    last = last_checkpoint(run_dir)
    if resume and not last.is_file():
        raise RunError(f"--resume: no checkpoint at {last}; start the run without --resume first")
    if not resume and last.is_file():
        raise RunError(
            f"{run_dir} already holds a run ({last}). Continue it with --resume, or start a new one "
            f"with trainer.run_name=NEW_NAME (or delete the folder)."
        )


@contextmanager
def _stopped_on_request(trainer: pl.Trainer, run_dir: Path) -> Iterator[None]:
    """A stop Lightning makes for SIGTERM or Ctrl-C ends the command as `RunStopped` (see
    `f2tune.train.stopping`), not as a silent exit with status 0."""
    try:
        yield
    except SIGTERMException:
        raise _stop_callback(trainer).stopped(trainer, run_dir / "config.yaml") from None


def _stop_callback(trainer: pl.Trainer) -> StopOnRequest:
    return next(c for c in trainer.callbacks if isinstance(c, StopOnRequest))


@contextmanager
def _removed_on_recipe_error(new_folder: Path | None, trainer: pl.Trainer) -> Iterator[None]:
    """Remove the run folder this run made when a recipe problem stops it before its first step:
    the problems Lightning's start meets (the validation interval against an epoch's batches, known
    once each process has its training loader) leave no folder behind, as those found before the
    folder was made do."""
    try:
        yield
    except RecipeError:
        if new_folder is not None and trainer.global_step == 0:
            shutil.rmtree(new_folder, ignore_errors=True)
        raise


def _is_launching_process() -> bool:
    """True in the one process that starts a run: global rank 0 under any launcher, or the
    command itself before Lightning spawns the other ranks."""
    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
