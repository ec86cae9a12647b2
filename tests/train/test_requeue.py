"""SLURM's requeue signal (`--signal=USR1@90`): the step ends, `last.ckpt` is written, the job is
requeued (`scontrol requeue`), and its next start continues the run."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from helpers import tiny_recipe

import f2tune.train.run as run
from f2tune.cli import main

JOB = "4242"


class SignalDuringStep4(pl.Callback):
    def __init__(self) -> None:
        self.sent = False

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 3 and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def slurm_job(tmp_path, monkeypatch) -> Path:
    """This process as a one-task SLURM job, with an `scontrol` that notes what it is asked."""
    for name, value in {
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NAME": "train",
        "SLURM_JOB_ID": JOB,
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    tools = tmp_path / "bin"
    tools.mkdir()
    scontrol = tools / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    original_fit = run.fit
    monkeypatch.setattr(
        run, "fit", lambda recipe, resume=False, **kw: original_fit(recipe, resume, [SignalDuringStep4()], **kw)
    )
    return tmp_path / "scontrol.log"


def write_recipe(tmp_path: Path) -> str:
    recipe = tiny_recipe(
        tmp_path,
        trainer={"max_steps": 6, "loggers": ["csv"]},
        eval={"before_fit": False, "metric": "none"},
        export={"enabled": False},
    )
    recipe["data"]["val"] = []
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return str(tmp_path / "recipe.yaml")


def test_the_requeue_signal_saves_the_step_requeues_the_job_and_the_next_start_continues(tmp_path, slurm_job, capsys):
    recipe = write_recipe(tmp_path)
    last = tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt"
    assert main(["fit", recipe, "--auto-resume"]) == 128 + signal.SIGUSR1
    err = capsys.readouterr().err
    assert f"f2tune: error: stopped by SIGUSR1 at step 4 (SLURM's requeue signal): {last} holds step 4; " in err
    assert f"job {JOB} requeued: its next start continues the run" in err
    assert slurm_job.read_text() == f"requeue {JOB}\n"
    assert torch.load(last, weights_only=False)["global_step"] == 4
    assert not list((tmp_path / "runs").rglob("hpc_ckpt*"))  # Lightning's mid-step checkpoint is not written

    assert main(["fit", recipe, "--auto-resume"]) == 0  # the requeued job's start
    assert torch.load(last, weights_only=False)["global_step"] == 6


def test_a_job_whose_command_starts_a_new_run_is_not_requeued(tmp_path, slurm_job, capsys):
    recipe = write_recipe(tmp_path)
    assert main(["fit", recipe]) == 128 + signal.SIGUSR1
    err = capsys.readouterr().err
    assert "holds step 4 (the job is not requeued: its command starts a new run, `--auto-resume` would" in err
    assert "--resume`" in err and not slurm_job.exists()


def test_a_requeue_that_fails_says_how_to_continue(tmp_path, slurm_job, capsys):
    """scontrol refusing (a job not requeueable, `--no-requeue`): the run is saved all the same."""
    (tmp_path / "bin" / "scontrol").write_text("#!/bin/sh\necho 'Requeue of JobId=4242 not allowed' >&2\nexit 1\n")
    recipe = write_recipe(tmp_path)
    assert main(["fit", recipe, "--auto-resume"]) == 128 + signal.SIGUSR1
    err = capsys.readouterr().err
    assert f"holds step 4 (requeueing job {JOB} failed: Requeue of JobId=4242 not allowed); continue with" in err
