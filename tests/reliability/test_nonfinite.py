"""NaN/inf losses and gradients: the step is skipped and counted; too many in a row stop the run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_recipe

from f2tune.recipe import validate_recipe
from f2tune.train.guards import NonFiniteGuard, TrainingStopped
from f2tune.train.run import fit


def quick_recipe(tmp_path, **trainer):
    raw = tiny_recipe(
        tmp_path,
        trainer={"max_steps": 5, "loggers": ["csv"], **trainer},
        eval={"before_fit": False, "metric": "none"},
        export={"enabled": False},
    )
    raw["data"]["val"] = []
    return validate_recipe(raw)


class PoisonInputs(pl.Callback):
    """Images full of NaN at the given (0-based) optimizer steps: the loss is NaN."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.weights: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.weights[trainer.global_step] = pl_module.model.lm_head.weight.detach().clone()
        if trainer.global_step in self.steps:
            batch["pixel_values"].fill_(float("nan"))


class PoisonGradients(pl.Callback):
    """An infinite gradient from `first` on, the loss itself finite."""

    def __init__(self, first: int) -> None:
        self.first = first

    def on_after_backward(self, trainer, pl_module):
        if trainer.global_step >= self.first:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.fill_(float("inf"))


def test_nonfinite_steps_are_skipped_counted_and_training_goes_on(tmp_path):
    poison = PoisonInputs({1, 2})
    result = fit(quick_recipe(tmp_path, max_nonfinite_steps=3), extra_callbacks=[poison])
    assert torch.equal(poison.weights[1], poison.weights[3]), "a skipped step must not change the weights"
    assert not torch.equal(poison.weights[3], poison.weights[4]), "training resumes after the bad steps"
    assert all(torch.isfinite(w).all() for w in poison.weights.values())
    rows = list(csv.DictReader((result.run_dir / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    counts = [float(r["train/nonfinite_steps"]) for r in rows if r.get("train/nonfinite_steps")]
    assert counts[-1] == 2


def test_too_many_nonfinite_steps_in_a_row_stop_with_step_and_samples(tmp_path):
    recipe = quick_recipe(tmp_path, max_steps=8, max_nonfinite_steps=3, checkpoint_every_n_steps=1)
    with pytest.raises(TrainingStopped, match=r"(?s)stopped at step 4: 3 optimizer steps.*gradients.*shapes-1-"):
        fit(recipe, extra_callbacks=[PoisonGradients(first=1)])
    last = torch.load(tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_the_loss_check_waits_for_the_optimizer_step():
    """The check of each batch's loss is not read before its backward (a read there would stall a
    GPU between forward and backward): a loss on the meta device, which cannot be read, passes.
    (The tests above show that a NaN loss is still caught at the optimizer step.)"""
    guard = NonFiniteGuard(max_in_a_row=3)
    for _ in range(2):  # two accumulated batches
        guard.on_before_backward(None, None, torch.tensor(float("nan"), device="meta"))


POISON_ONE_PROCESS = """
import json, sys
from pathlib import Path
import lightning.pytorch as pl
import f2tune.train.run as run
from f2tune.recipe import validate_recipe

class PoisonTheSecondProcess(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 1:
            print("poisoned:", " ".join(batch["ids"]), flush=True)
            batch["pixel_values"].fill_(float("nan"))

recipe = validate_recipe(json.loads(Path(sys.argv[1]).read_text()))
run.fit(recipe, extra_callbacks=[PoisonTheSecondProcess()])
"""


@pytest.mark.slow
def test_under_ddp_the_warning_names_the_process_whose_loss_was_not_finite(tmp_path):
    """Rank 0 says it, and named its own samples and "gradients" (the all-reduce spread the NaN)."""
    recipe = quick_recipe(tmp_path, devices=2, strategy="ddp", max_steps=3)
    (tmp_path / "recipe.json").write_text(recipe.model_dump_json())
    (tmp_path / "poison.py").write_text(POISON_ONE_PROCESS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, str(tmp_path / "poison.py"), str(tmp_path / "recipe.json")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    poisoned = done.stdout.split("poisoned: ")[1].splitlines()[0]
    assert f"step 2: non-finite loss, step skipped (1 so far); samples: {poisoned.replace(' ', ', ')}" in done.stderr
