"""Early stopping decided at each validation's end, with the recipe's patience after a resume."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_recipe

from f2tune.recipe import validate_recipe
from f2tune.train.early_stopping import ValidationEarlyStopping
from f2tune.train.run import fit

EPOCH_END = {"max_steps": -1, "val_check_interval": None, "check_val_every_n_epoch": 1, "early_stopping_patience": 3}


def test_a_run_validated_at_epoch_ends_resumes_with_early_stopping_on(tmp_path):
    """Lightning decided at the epoch's end, after last.ckpt: a resume from it ran that hook again
    before any validation and stopped on 'Early stopping conditioned on metric val/loss which is
    not available'."""
    first = fit(validate_recipe(tiny_recipe(tmp_path, trainer={**EPOCH_END, "max_epochs": 2})))
    saved = torch.load(first.last_checkpoint, weights_only=False)
    (state,) = [v for k, v in saved["callbacks"].items() if k.startswith("ValidationEarlyStopping")]
    # the loss falls from epoch to epoch here: the best is the last validation's, which it missed
    assert float(state["best_score"]) == pytest.approx(first.metrics_after["val/loss"])
    resumed = fit(validate_recipe(tiny_recipe(tmp_path, trainer={**EPOCH_END, "max_epochs": 3})), resume=True)
    assert torch.load(resumed.last_checkpoint, weights_only=False)["global_step"] == 12


def test_a_patience_changed_on_resume_is_the_one_used():
    """Lightning restored the checkpoint's patience over the recipe's, which the log said had changed."""
    stopper = ValidationEarlyStopping("val/loss", patience=5, mode="min")
    stopper.load_state_dict({"wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(1.0), "patience": 1})
    assert stopper.patience == 5 and stopper.wait_count == 1
