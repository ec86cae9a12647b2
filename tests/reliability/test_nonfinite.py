"""NaN/inf losses and gradients: the step is skipped and counted; too many in a row stop the run."""

from __future__ import annotations

import csv

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
