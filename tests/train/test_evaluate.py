"""`f2tune validate|test`: metrics of a run's checkpoints, predictions written beside them."""

from __future__ import annotations

import errno
import json
import tempfile
import warnings
from pathlib import Path

import pytest
import yaml
from helpers import tiny_recipe

import f2tune.train.evaluate
from f2tune.cli import main
from f2tune.config import JsonlSource
from f2tune.errors import RecipeError, RunError
from f2tune.log import setup_logging
from f2tune.recipe import validate_recipe
from f2tune.train.evaluate import evaluate
from f2tune.train.run import fit


@pytest.fixture
def trained(tmp_path):
    raw = tiny_recipe(tmp_path, eval={"before_fit": False})
    raw["data"]["test"] = [{"format": "shapes", "num_samples": 6, "seed": 3}]
    recipe = validate_recipe(raw)
    fit(recipe)
    return recipe


def test_validate_the_best_checkpoint_and_write_predictions(trained):
    metrics = evaluate(trained, "validate", "best")
    assert {"val/loss", "val/CAPTION/exact_match"} <= set(metrics)
    folders = sorted((Path(trained.trainer.output_dir) / "t" / "predictions").iterdir())
    latest = folders[-1]
    lines = (latest / "rank0.jsonl").read_text().splitlines()
    assert len(lines) == 4  # eval.max_samples
    record = json.loads(lines[0])
    assert {"id", "task", "prompt", "target", "generated", "prediction", "reference"} <= set(record)
    assert json.loads((latest / "metrics.json").read_text()).keys() == {"CAPTION/exact_match"}


def test_best_says_which_checkpoint_it_evaluates(trained, capsys):
    setup_logging()
    evaluate(trained, "validate", "best")
    checkpoints = Path(trained.trainer.output_dir) / "t" / "checkpoints"
    assert f"--checkpoint best: {checkpoints / 'best-step='}" in capsys.readouterr().err


def test_best_falls_back_to_last_and_says_why(tmp_path, capsys):
    """A run that kept no best checkpoint (save_top_k: 0) is evaluated at its last.ckpt; the help and
    the log say so, rather than a path the user did not ask for appearing in the summary."""
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"save_top_k": 0}, eval={"before_fit": False}))
    fit(recipe)
    setup_logging()
    capsys.readouterr()
    evaluate(recipe, "validate", "best")
    last = Path(recipe.trainer.output_dir) / "t" / "checkpoints" / "last.ckpt"
    assert (
        "--checkpoint best: the run kept no best checkpoint by val/loss (trainer.save_top_k: 0, or no validation "
        f"before it ended); evaluating {last} instead"
    ) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    assert "the run's last.ckpt when it kept none" in " ".join(capsys.readouterr().out.split())


def test_untrained_weights_score_worse_than_the_trained_checkpoint(trained):
    untrained = evaluate(trained, "validate", "none")
    last = evaluate(trained, "validate", "last")
    assert last["val/loss"] < untrained["val/loss"]


def test_validate_generates_whatever_the_fits_every_n_validations(trained):
    """The fit validated twice (the count is in its checkpoint); `every_n_validations` thins the
    fit's validations, never the metrics `f2tune validate` is asked for."""
    thinned = trained.model_copy(deep=True)
    thinned.eval.every_n_validations = 3
    assert "val/CAPTION/exact_match" in evaluate(thinned, "validate", "last")


def test_test_split(trained):
    assert "test/loss" in evaluate(trained, "test", "last")


def test_a_checkpoint_is_evaluated_where_only_its_evaluation_data_is(trained, tmp_path):
    """validate reads data.val, test data.test, nothing else: the training data (here a file
    that is not there) may stay on the machine that trained."""
    missing = [JsonlSource(format="jsonl", path=str(tmp_path / "gone.jsonl"))]
    elsewhere = trained.model_copy(deep=True)
    elsewhere.data.train = missing
    assert "val/loss" in evaluate(elsewhere, "validate", "last")
    elsewhere.data.val = missing
    assert "test/loss" in evaluate(elsewhere, "test", "last")


def test_a_test_without_validation_data_builds_the_fits_checkpoint_callbacks(tmp_path):
    """A monitor that is maximised (`auto` from its metric) gives the fit's checkpoint callbacks
    the mode `max`; `f2tune test`, which reads no validation data, must build them alike, or
    Lightning warns that the checkpoint's callbacks are missing."""
    raw = tiny_recipe(tmp_path, eval={"before_fit": False}, trainer={"monitor": "val/CAPTION/exact_match"})
    raw["data"]["test"] = [{"format": "shapes", "num_samples": 6, "seed": 3}]
    recipe = validate_recipe(raw)
    fit(recipe)
    recipe.data.val = [JsonlSource(format="jsonl", path=str(tmp_path / "gone.jsonl"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "test/loss" in evaluate(recipe, "test", "best")
    assert not [w for w in caught if "callbacks used to create the checkpoint" in str(w.message)]


def test_missing_split_and_checkpoint_are_explained(tmp_path, trained):
    with pytest.raises(RecipeError, match="data.test is empty"):
        evaluate(validate_recipe(tiny_recipe(tmp_path)), "test", "last")
    fresh = validate_recipe(tiny_recipe(tmp_path, trainer={"run_name": "never-trained"}))
    with pytest.raises(RunError, match="no checkpoint in .*never-trained"):
        evaluate(fresh, "validate", "best")
    with pytest.raises(RunError, match=r"nope.ckpt is neither best, last, none nor a checkpoint file"):
        evaluate(trained, "validate", str(tmp_path / "nope.ckpt"))
    with pytest.raises(RunError, match=r"--checkpoint: Best is neither best, last, none nor a checkpoint file"):
        evaluate(trained, "validate", "Best")


def test_a_checkpoint_is_not_evaluated_under_another_adaptation(trained):
    """A LoRA recipe over this full run's checkpoint loaded none of its weights and scored the
    untrained model, exit 0."""
    lora = validate_recipe(trained.model_dump() | {"adaptation": {"method": "lora"}})
    with pytest.raises(RunError, match="trained under another model or adaptation .* adaptation.method was 'full'"):
        evaluate(lora, "validate", "best")


def test_predictions_are_filed_under_the_evaluated_checkpoints_step(tmp_path):
    """Lightning restores a checkpoint's weights for validate, not its step: the predictions of
    `f2tune validate` went to val-step000000, beside the baseline that fit measured before training."""
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"max_steps": 2}))  # before_fit: a step-0 baseline
    run = fit(recipe).run_dir / "predictions"
    baseline = (run / "val-step000000" / "rank0.jsonl").read_text()  # what the untrained model generated
    trained = (run / "val-step000002" / "rank0.jsonl").read_text()
    assert trained != baseline
    evaluate(recipe, "validate", "last")
    assert (run / "val-step000002-2" / "rank0.jsonl").read_text() == trained  # the same weights, the same text
    evaluate(recipe, "validate", "none")  # the untrained weights are step 0's, as the baseline is
    assert (run / "val-step000000-2" / "rank0.jsonl").read_text() == baseline


def test_an_evaluation_never_replaces_an_earlier_ones_predictions(tmp_path, capsys):
    """`f2tune validate` of a step fit validated wrote into fit's `val-step<N>/`: validated on other
    data or with other settings, fit's predictions and metrics were lost."""
    setup_logging()
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False}))
    run = fit(recipe).run_dir / "predictions"
    fits = {p.name: p.read_text() for p in (run / "val-step000002").iterdir() if p.is_file()}
    fewer = validate_recipe(recipe.model_dump() | {"eval": recipe.eval.model_dump() | {"max_samples": 1}})
    evaluate(fewer, "validate", "last")
    evaluate(fewer, "validate", "last")
    assert {p.name: p.read_text() for p in (run / "val-step000002").iterdir() if p.is_file()} == fits
    assert len((run / "val-step000002-2" / "rank0.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == ["val-step000002", "val-step000002-2", "val-step000002-3"]
    assert f"predictions and metrics in {run / 'val-step000002-3'}" in capsys.readouterr().err


def test_a_predictions_folder_that_cannot_be_written_stops_before_evaluating(tmp_path, monkeypatch, capsys):
    """`f2tune validate` ran the whole evaluation, then its PermissionError on the predictions folder
    was a traceback. Tests run as root, whom chmod does not stop: the folder refuses in the writability
    test's own call instead."""
    runs = tmp_path / "runs"
    made = tempfile.mkdtemp

    def denied(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(runs):
            raise PermissionError(errno.EACCES, "Permission denied", dir)
        return made(*args, dir=dir, **kwargs)

    def evaluated(*args, **kwargs):
        raise AssertionError("the model and data were loaded before the folder was checked")

    (runs / "t" / "predictions").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    monkeypatch.setattr(f2tune.train.evaluate, "assemble", evaluated)
    recipe = tiny_recipe(tmp_path)
    with pytest.raises(RunError, match=r"predictions, the run's predictions folder .* cannot be written: Permission"):
        evaluate(validate_recipe(recipe), "validate", "none")
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["validate", str(path), "--checkpoint", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("f2tune: error:") == 1 and "Traceback" not in err
