"""Kill -9 in the middle of an epoch, resume, and get the run an uninterrupted one would have given:
same steps, same data order, same optimizer and scheduler state, same dropout (loss equal). A run
stopped at its end is finished by `--resume`; a resume refused at its start leaves the run's recipes
as they were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import lightning.pytorch as pl
import pytest
import torch
import yaml
from helpers import tiny_recipe
from lightning.pytorch.trainer.states import TrainerFn

from f2tune.cli import main
from f2tune.errors import RecipeError, RunError, RunStopped
from f2tune.recipe import validate_recipe
from f2tune.train.locate import checkpoint_step
from f2tune.train.run import fit

STEPS = 40


class Losses(pl.Callback):
    """Training loss by optimizer step (1-based, as `trainer.global_step` after the step)."""

    def __init__(self) -> None:
        self.by_step: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.by_step[trainer.global_step] = float(outputs["loss"])


def recipe_for(tmp_path, name: str) -> dict:
    raw = tiny_recipe(
        tmp_path,
        trainer={"max_steps": STEPS, "checkpoint_every_n_steps": 3, "run_name": name, "loggers": ["csv"]},
        eval={"before_fit": False, "metric": "none"},
        export={"enabled": False},
    )
    raw["data"]["val"] = []
    return raw


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    raw = recipe_for(tmp_path, "killed")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    last = tmp_path / "runs" / "killed" / "checkpoints" / "last.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "f2tune.cli", "fit", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not last.is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {stderr.decode()[-2000:]}"

    saved = torch.load(last, weights_only=False)
    stopped_at = saved["global_step"]
    assert 0 < stopped_at < STEPS and stopped_at % 4, "the checkpoint should be from the middle of an epoch"

    resumed = Losses()
    fit(validate_recipe(raw), resume=True, extra_callbacks=[resumed])
    reference = Losses()
    fit(validate_recipe(recipe_for(tmp_path, "reference")), extra_callbacks=[reference])

    assert sorted(resumed.by_step) == list(range(stopped_at + 1, STEPS + 1))
    expected = [reference.by_step[s] for s in sorted(resumed.by_step)]
    got = [resumed.by_step[s] for s in sorted(resumed.by_step)]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("val_check_interval", [2, 100], ids=["between-validations", "before-any-validation"])
def test_a_run_that_ended_between_validations_resumes_from_its_final_step(tmp_path, val_check_interval):
    """last.ckpt is written at each validation; a run whose last steps came after its last validation
    (or that never validated) saved them nowhere: --resume trained them again, or found no checkpoint."""

    def recipe(name: str, steps: int) -> dict:
        raw = recipe_for(tmp_path, name)
        raw["data"]["val"] = [{"format": "shapes", "num_samples": 4, "seed": 2}]
        raw["optim"]["schedule"] = "constant"  # the first part's schedule is the whole run's
        raw["trainer"] |= {
            "max_steps": steps,
            "checkpoint_every_n_steps": None,
            "val_check_interval": val_check_interval,
        }
        return raw

    first = fit(validate_recipe(recipe("ended", 3)))
    assert torch.load(first.last_checkpoint, weights_only=False)["global_step"] == 3
    resumed, reference = Losses(), Losses()
    fit(validate_recipe(recipe("ended", 6)), resume=True, extra_callbacks=[resumed])
    fit(validate_recipe(recipe("reference", 6)), extra_callbacks=[reference])
    assert sorted(resumed.by_step) == [4, 5, 6]
    assert [resumed.by_step[s] for s in (4, 5, 6)] == pytest.approx([reference.by_step[s] for s in (4, 5, 6)], rel=1e-5)


NOTHING_LEFT = r"--resume: the run (is at step|has finished 1 epoch).* nothing is left to train"


def short_recipe(tmp_path, name: str = "t", **trainer) -> dict:
    """16 training samples (4 steps an epoch), 8 to validate (two batches), generating each time."""
    settings = {"max_steps": 4, "run_name": name, "loggers": ["csv"], **trainer}
    return tiny_recipe(tmp_path, trainer=settings, eval={"before_fit": False, "max_new_tokens": 4})


class SigtermAt(pl.Callback):
    """SIGTERM at the end of training step `step` (`where="train"`), or in the first batch of a
    validation at that step (`"fit-validation"`: fit's own; `"final-validation"`: the one fit runs
    after training)."""

    def __init__(self, step: int, where: str) -> None:
        self.step, self.where = step, where

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.where == "train" and trainer.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        fitting = trainer.state.fn == TrainerFn.FITTING
        if trainer.global_step == self.step and batch_idx == 0 and fitting == (self.where == "fit-validation"):
            signal.raise_signal(signal.SIGTERM)


class Seen(pl.Callback):
    """The steps a fit trained, and the step of each validation it ran (and whether fit's own)."""

    def __init__(self) -> None:
        self.trained: list[int] = []
        self.validated: list[tuple[int, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.trained.append(trainer.global_step)

    def on_validation_start(self, trainer, pl_module):
        self.validated.append((trainer.global_step, trainer.state.fn == TrainerFn.FITTING))


@pytest.mark.parametrize(
    ("trainer", "stop", "validation"),
    [
        ({}, SigtermAt(4, "fit-validation"), (4, True)),
        ({"max_steps": 3}, SigtermAt(3, "train"), (3, False)),
        ({"max_steps": 3}, SigtermAt(3, "final-validation"), (3, False)),
        (
            {"max_steps": -1, "max_epochs": 1, "val_check_interval": None, "check_val_every_n_epoch": 1},
            SigtermAt(4, "fit-validation"),
            (4, True),
        ),
    ],
    ids=["in-the-validation-at-max_steps", "at-the-last-step", "in-the-validation-after-training", "max_epochs"],
)
def test_a_run_stopped_at_its_end_is_finished_by_resume_and_then_refused(tmp_path, trainer, stop, validation):
    """It was refused ("nothing is left to train"): no final validation, export, loss curve or
    summary, and a job re-run with --auto-resume failed forever. Resumed, the validation the stop
    interrupted (or the one after training) runs whole, as the uninterrupted run's, and no step
    trains; a second --resume is refused as that of any finished run."""
    raw = short_recipe(tmp_path, "stopped", **trainer)
    run_dir = tmp_path / "runs" / "stopped"
    with pytest.raises(RunStopped, match=rf"^stopped by SIGTERM at step {validation[0]}: .*last.ckpt holds step"):
        fit(validate_recipe(raw), extra_callbacks=[stop])
    assert not (run_dir / "export").exists()

    seen = Seen()
    result = fit(validate_recipe(raw), resume=True, extra_callbacks=[seen])
    reference = fit(validate_recipe(short_recipe(tmp_path, "reference", **trainer)))
    assert seen.trained == []
    assert seen.validated == [validation]
    assert result.metrics_after == pytest.approx(reference.metrics_after, rel=1e-5)
    assert {"val/loss", "val/CAPTION/exact_match"} <= set(result.metrics_after)
    assert result.best_checkpoint.endswith(reference.best_checkpoint.rsplit("/", 1)[1])
    assert (run_dir / "export" / "model.safetensors").is_file() and result.loss_curve.is_file()
    with pytest.raises(RunError, match=NOTHING_LEFT):
        fit(validate_recipe(raw), resume=True)


def test_auto_resume_finishes_a_run_stopped_in_its_final_validation_with_status_0(tmp_path):
    """What a SLURM job script re-runs: the run's end is done, the job exits 0. Run once more, the
    finished run is refused as --resume refuses it (fit cannot tell the two flags apart)."""
    with pytest.raises(RunStopped, match=r"holds step 4 \(its validation runs again first\); continue with"):
        fit(validate_recipe(short_recipe(tmp_path)), extra_callbacks=[SigtermAt(4, "fit-validation")])
    config = tmp_path / "runs" / "t" / "config.yaml"
    assert main(["fit", str(config), "--auto-resume"]) == 0
    assert (tmp_path / "runs" / "t" / "export" / "model.safetensors").is_file()
    assert main(["fit", str(config), "--auto-resume"]) == 2


def test_a_final_validation_the_changed_recipe_would_not_run_is_refused_before_a_step(tmp_path):
    """Validating every 3 steps, Lightning would not resume step 4's validation and trained a step
    past trainer.max_steps instead; it said "a bug, please report it"."""
    with pytest.raises(RunStopped):
        fit(validate_recipe(short_recipe(tmp_path)), extra_callbacks=[SigtermAt(4, "fit-validation")])
    moved = validate_recipe(short_recipe(tmp_path, val_check_interval=3))
    with pytest.raises(RunError, match=r"stopped in its validation at step 4, its last, and this recipe validates"):
        fit(moved, resume=True)
    assert checkpoint_step(tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt") == 4


def saved_steps(run_dir) -> dict[str, int]:
    """trainer.max_steps of each recipe file beside the run."""
    return {p.name: yaml.safe_load(p.read_text())["trainer"]["max_steps"] for p in run_dir.glob("config*.yaml")}


def test_a_resume_refused_at_its_start_leaves_the_run_recipes_as_they_were(tmp_path):
    """config.yaml was moved to config.until-step2.yaml and the new recipe saved before Lightning's
    start refused it; a second try moved that never-trained recipe over config.until-step2.yaml,
    and the recipe that trained steps 0..2 was lost."""
    run_dir = fit(validate_recipe(short_recipe(tmp_path, max_steps=2))).run_dir
    refused = validate_recipe(short_recipe(tmp_path, max_steps=6, val_check_interval=5, check_val_every_n_epoch=1))
    for _ in range(2):
        with pytest.raises(RecipeError, match="trainer.val_check_interval is 5 training batches"):
            fit(refused, resume=True)
        assert saved_steps(run_dir) == {"config.yaml": 2}
    fit(validate_recipe(short_recipe(tmp_path, max_steps=3)), resume=True)
    assert saved_steps(run_dir) == {"config.until-step2.yaml": 2, "config.yaml": 3}


def test_a_resume_keeps_an_existing_recipe_of_the_steps_before(tmp_path, capsys):
    """A config.until-step<N>.yaml holds the recipe that trained up to step N; a config.yaml beside
    it at that step (from a part that trained nothing, as an older f2tune left it) is not moved
    over it."""
    run_dir = fit(validate_recipe(short_recipe(tmp_path, max_steps=2))).run_dir
    trained = (run_dir / "config.yaml").read_text()
    (run_dir / "config.until-step2.yaml").write_text(trained)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(short_recipe(tmp_path, max_steps=6)))  # the part that failed
    fit(validate_recipe(short_recipe(tmp_path, max_steps=3)), resume=True)
    assert (run_dir / "config.until-step2.yaml").read_text() == trained
    assert saved_steps(run_dir) == {"config.until-step2.yaml": 2, "config.yaml": 3}
    assert "the recipe that trained up to step 2 stays config.until-step2.yaml" in capsys.readouterr().err
