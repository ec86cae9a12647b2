"""`trainer.monitor`: checked against what the run logs before weights load; it picks the best
checkpoint, stops the run early with a patience, and decides what `export.weights: best` exports."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_recipe
from safetensors.torch import load_file

from f2tune.errors import RecipeError
from f2tune.recipe import validate_recipe
from f2tune.train.monitor import logged_values, monitor_mode
from f2tune.train.run import fit


def recipe_with(tmp_path, **trainer):
    return validate_recipe(tiny_recipe(tmp_path, trainer=trainer, eval={"metric": "auto"}))


def test_the_run_logs_each_tasks_metric_keys_and_knows_which_way_is_better(tmp_path):
    values = logged_values(["<OD>", "<OCR>"], recipe_with(tmp_path))
    assert values["val/loss"] is False and values["val/OD/map"] is True and values["val/OD/mar_100"] is True
    assert values["val/OCR/cer"] is False and values["val/OCR/wer"] is False
    assert "val/CAPTION/cider" not in values


@pytest.mark.parametrize(
    ("monitor", "mode", "expected"),
    [
        ("val/loss", "auto", "min"),
        ("val/CAPTION/cider", "auto", "max"),
        ("val/CAPTION/bleu4", "min", "min"),
    ],
)
def test_auto_mode_follows_the_metric(tmp_path, monitor, mode, expected):
    assert monitor_mode(recipe_with(tmp_path, monitor=monitor, monitor_mode=mode), ["<CAPTION>"]) == expected


def test_a_monitor_the_run_does_not_log_is_refused_with_the_close_keys(tmp_path):
    with pytest.raises(RecipeError) as caught:
        monitor_mode(recipe_with(tmp_path, monitor="val/CAPTION/CIDEr"), ["<CAPTION>"])
    message = str(caught.value)
    assert message.startswith(
        "trainer.monitor: this run does not log 'val/CAPTION/CIDEr'; did you mean 'val/CAPTION/cider'"
    )
    assert "It logs: val/loss, val/CAPTION/cider, val/CAPTION/bleu4, val/CAPTION/rougeL" in message
    with pytest.raises(RecipeError, match=r"does not log 'val/OD/zzz'\. It logs: val/loss, "):  # was "; It logs"
        monitor_mode(recipe_with(tmp_path, monitor="val/OD/zzz"), ["<CAPTION>"])


@pytest.mark.parametrize(
    ("sections", "problem"),
    [
        ({"trainer": {"monitor": "val/OD/map"}, "eval": {"every_n_validations": 2}}, "eval.every_n_validations: 1"),
        ({"trainer": {"monitor": "val/OD/map"}, "eval": {"metric": "none"}}, "eval.metric other than none"),
        ({"export": {"weights": "best"}, "trainer": {"save_top_k": 0}}, "needs trainer.save_top_k >= 1"),
        ({"trainer": {"monitor": "loss"}}, "trainer.monitor: String should match pattern"),
    ],
)
def test_what_cannot_pick_a_best_checkpoint_is_a_recipe_error(tmp_path, sections, problem):
    with pytest.raises(RecipeError, match=problem):
        validate_recipe(tiny_recipe(tmp_path, **sections))


def test_early_stopping_needs_validation_data(tmp_path):
    raw = tiny_recipe(tmp_path, trainer={"early_stopping_patience": 2})
    raw["data"]["val"] = []
    with pytest.raises(RecipeError, match="early_stopping_patience and export.weights: best need data.val"):
        validate_recipe(raw)


@pytest.mark.slow
def test_patience_stops_the_run_and_the_best_checkpoint_is_exported(tmp_path):
    """Validation every 2 steps; exact match stays 0 on the untrained tiny model, so the first
    validation stays the best and the second, one without improvement, ends the run."""
    recipe = validate_recipe(
        tiny_recipe(
            tmp_path,
            trainer={"max_steps": 40, "monitor": "val/CAPTION/exact_match", "early_stopping_patience": 1},
            export={"weights": "best"},
            eval={"before_fit": False},
        )
    )
    result = fit(recipe)
    assert result.best_checkpoint.endswith("best-step=2.ckpt")
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert last["global_step"] == 4, "stopped at the second validation, not at max_steps"
    best = torch.load(result.best_checkpoint, weights_only=True)["state_dict"]
    exported = load_file(result.run_dir / "export" / "model.safetensors")
    name = "model.language_model.encoder.layers.0.fc1.weight"
    assert torch.equal(exported[name], best[f"model.{name}"])
    assert not torch.equal(exported[name], last["state_dict"][f"model.{name}"])
    assert result.exported == "best checkpoint (best-step=2.ckpt)"
    assert "step 2 (best-step=2.ckpt)" in (result.run_dir / "export" / "README.md").read_text()
