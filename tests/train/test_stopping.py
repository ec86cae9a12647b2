"""A fit stopped by SIGTERM or Ctrl-C saves its step, says how to continue, and resumes exactly."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_recipe

from f2tune.errors import RunStopped
from f2tune.log import setup_logging
from f2tune.recipe import validate_recipe
from f2tune.train.evaluate import evaluate
from f2tune.train.module import Florence2Module
from f2tune.train.run import fit

STEPS = 8


def recipe_for(tmp_path, name: str, workers: int = 0) -> dict:
    raw = tiny_recipe(
        tmp_path,
        trainer={"max_steps": STEPS, "run_name": name, "loggers": ["csv"]},
        eval={"before_fit": False, "metric": "none"},
        export={"enabled": False},
    )
    raw["data"].update(val=[], num_workers=workers)
    return raw


class Losses(pl.Callback):
    """Training loss by optimizer step (1-based, as `trainer.global_step` after the step)."""

    def __init__(self) -> None:
        self.by_step: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.by_step[trainer.global_step] = float(outputs["loss"])


class SignalAt(pl.Callback):
    """Sends this process `signals` after step `step`; first, as a scheduler signals every process
    of a job, each loader worker gets SIGTERM and SIGINT, and whether it outlived them is kept."""

    def __init__(self, step: int, *signals: signal.Signals) -> None:
        self.step, self.signals = step, signals
        self.workers_alive: list[bool] = []
        self._earlier = set(multiprocessing.active_children())  # other tests' processes: left alone

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        workers = [child for child in multiprocessing.active_children() if child not in self._earlier]
        for worker in workers:
            os.kill(worker.pid, signal.SIGTERM)
            os.kill(worker.pid, signal.SIGINT)
        time.sleep(0.5)
        self.workers_alive = [worker.is_alive() for worker in workers]
        for number in self.signals:
            signal.raise_signal(number)


@pytest.mark.slow
def test_sigterm_saves_the_step_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
    raw = recipe_for(tmp_path, "stopped", workers=1)
    stop = SignalAt(3, signal.SIGTERM)
    with pytest.raises(RunStopped) as stopped:
        fit(validate_recipe(raw), extra_callbacks=[stop])
    run_dir = tmp_path / "runs" / "stopped"
    assert stop.workers_alive and all(stop.workers_alive), "loader workers must outlive the signals meant for the run"
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert str(stopped.value) == (
        f"stopped by SIGTERM at step 3: {run_dir}/checkpoints/last.ckpt holds step 3; "
        f"continue with `f2tune fit {run_dir}/config.yaml --resume`"
    )
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3

    resumed, reference = Losses(), Losses()
    fit(validate_recipe(raw), resume=True, extra_callbacks=[resumed])
    fit(validate_recipe(recipe_for(tmp_path, "reference", workers=1)), extra_callbacks=[reference])
    assert sorted(resumed.by_step) == list(range(4, STEPS + 1))
    expected = [reference.by_step[step] for step in sorted(resumed.by_step)]
    assert [resumed.by_step[step] for step in sorted(resumed.by_step)] == pytest.approx(expected, rel=1e-5)


class Validations(pl.Callback):
    """Each validation of a fit: its step, the samples it saw, the metrics it logged, and whether
    it generated."""

    def __init__(self) -> None:
        self.seen: dict[int, list[str]] = {}
        self.metrics: dict[int, dict[str, float]] = {}
        self.generated: list[int] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.seen.setdefault(trainer.global_step, []).extend(batch["ids"])

    def on_validation_end(self, trainer, pl_module):  # after the module's epoch end: its metrics are logged
        # (a validation that does not generate leaves the previous task metrics in `callback_metrics`)
        logged = {
            k for k in trainer.callback_metrics if k == "val/loss" or (pl_module.generating and k.startswith("val/"))
        }
        self.metrics[trainer.global_step] = {k: float(trainer.callback_metrics[k]) for k in logged}
        if pl_module.generating:
            self.generated.append(trainer.global_step)


@pytest.mark.slow
@pytest.mark.parametrize("stop_step", [4, 8], ids=["mid-epoch", "at-the-epoch-end"])
def test_a_stop_during_a_validation_keeps_its_step_and_the_resumed_run_validates_it_again(tmp_path, stop_step):
    """Resumed, the interrupted validation runs whole (every sample, its metrics as the
    uninterrupted run's), then training goes on as if never stopped; every other validation
    generates (`every_n_validations: 2`), counted across the resume."""

    def recipe(name: str) -> dict:
        raw = recipe_for(tmp_path, name)
        raw["trainer"].update(max_steps=12, val_check_interval=4)
        raw["data"]["train"] = [{"format": "shapes", "num_samples": 32, "seed": 1}]  # 8 steps an epoch
        raw["data"]["val"] = [{"format": "shapes", "num_samples": 8, "seed": 2}]  # two batches of 4
        raw["eval"] = {"before_fit": False, "metric": "exact_match", "max_new_tokens": 4, "every_n_validations": 2}
        return raw

    class StopInValidation(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            if trainer.global_step == stop_step and batch_idx == 0:
                signal.raise_signal(signal.SIGTERM)

    run_dir = tmp_path / "runs" / "stopped"
    with pytest.raises(RunStopped, match=rf"holds step {stop_step} \(its validation runs again first\)"):
        fit(validate_recipe(recipe("stopped")), extra_callbacks=[StopInValidation()])
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == stop_step

    resumed, reference = (Losses(), Validations()), (Losses(), Validations())
    fit(validate_recipe(recipe("stopped")), resume=True, extra_callbacks=list(resumed))
    fit(validate_recipe(recipe("reference")), extra_callbacks=list(reference))
    losses, validations = resumed
    assert sorted(losses.by_step) == list(range(stop_step + 1, 13))
    assert [losses.by_step[s] for s in sorted(losses.by_step)] == pytest.approx(
        [reference[0].by_step[s] for s in sorted(losses.by_step)], rel=1e-5
    )
    later = [step for step in (4, 8, 12) if step >= stop_step]
    assert sorted(validations.seen) == later
    assert all(sorted(validations.seen[step]) == [f"shapes-2-{i}" for i in range(8)] for step in later)
    for step in later:
        assert validations.metrics[step] == pytest.approx(reference[1].metrics[step], rel=1e-5)
    assert reference[1].generated == [4, 12]
    assert validations.generated == [step for step in later if step != 8]


def test_ctrl_c_stops_after_the_step_and_a_second_one_at_once(tmp_path):
    before = signal.getsignal(signal.SIGINT)  # Python's handler; ignored where the suite runs in the background
    with pytest.raises(RunStopped, match=r"^stopped by Ctrl-C at step 2: .*holds step 2; continue with") as stopped:
        fit(validate_recipe(recipe_for(tmp_path, "once")), extra_callbacks=[SignalAt(2, signal.SIGINT)])
    assert stopped.value.exit_code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is handled as before the fit again

    try:  # Lightning's own handling of an interrupt: exit 1 at once, nothing saved
        with pytest.raises(SystemExit) as exited:
            fit(validate_recipe(recipe_for(tmp_path, "twice")), extra_callbacks=[SignalAt(2, *[signal.SIGINT] * 2)])
        assert exited.value.code == 1
        assert not (tmp_path / "runs" / "twice" / "checkpoints" / "last.ckpt").exists()
    finally:
        signal.signal(signal.SIGINT, before)  # whatever happened above, not this suite's Ctrl-C


@pytest.mark.parametrize("batch", [0, 1], ids=["mid-validation", "at-its-last-batch"])
def test_a_stop_in_the_validation_before_training_ends_the_run(tmp_path, batch):
    """Nothing to save or resume from yet; at the validation's last batch Lightning itself lets the
    signal pass (the fit would then train on, as if never asked to stop)."""
    raw = recipe_for(tmp_path, "early")
    raw["data"]["val"] = [{"format": "shapes", "num_samples": 8, "seed": 2}]  # two batches of 4
    raw["eval"] = {"before_fit": True, "metric": "exact_match", "max_new_tokens": 4, "max_samples": 8}

    class SignalInValidation(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx, dataloader_idx=0):
            if batch_idx == batch:
                signal.raise_signal(signal.SIGTERM)

    with pytest.raises(RunStopped, match=r"^stopped by SIGTERM at step 0, before any checkpoint was saved"):
        fit(validate_recipe(raw), extra_callbacks=[SignalInValidation()])
    assert not (tmp_path / "runs" / "early" / "checkpoints").exists()


def test_sigterm_during_validate_is_an_error_not_a_silent_success(tmp_path, monkeypatch):
    """`f2tune validate` stopped before its last batch has no metrics: it must not exit 0."""
    raw = tiny_recipe(tmp_path, eval={"before_fit": False, "max_new_tokens": 4})  # 8 samples: two batches
    original = Florence2Module.validation_step

    def signalled(self, batch, batch_idx, *args):
        signal.raise_signal(signal.SIGTERM)
        return original(self, batch, batch_idx, *args)

    monkeypatch.setattr(Florence2Module, "validation_step", signalled)
    with pytest.raises(RunStopped, match="^validate stopped by SIGTERM before its last batch") as stopped:
        evaluate(validate_recipe(raw), "validate", "none")
    assert stopped.value.exit_code == 128 + signal.SIGTERM


def test_a_stop_inside_an_accumulated_step_waits_for_its_end(tmp_path, capsys):
    """SIGTERM after the first of two accumulated batches saved the step before with a data position
    past that batch: the resume skipped it, its gradient never applied."""
    raw = recipe_for(tmp_path, "accumulating")
    raw["optim"]["accumulate"] = 2

    class SignalInBatch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 2:  # the first batch of the second optimizer step
                signal.raise_signal(signal.SIGTERM)

    setup_logging()
    with pytest.raises(RunStopped, match="stopped by SIGTERM at step 2: .* holds step 2"):
        fit(validate_recipe(raw), extra_callbacks=[SignalInBatch()])
    saved = torch.load(tmp_path / "runs" / "accumulating" / "checkpoints" / "last.ckpt", weights_only=False)
    (position,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (saved["global_step"], position["samples"]) == (2, 4 * 4)  # 2 steps of 2 batches of 4
    assert "when this optimizer step's accumulated batches are done" in capsys.readouterr().err
