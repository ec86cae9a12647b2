"""Kill -9 in the middle of an epoch, resume, and get the run an uninterrupted one would have given:
same steps, same data order, same optimizer and scheduler state, same dropout (loss equal)."""

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

from f2tune.recipe import validate_recipe
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
