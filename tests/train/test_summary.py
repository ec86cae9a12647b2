"""The closing summary of a fit, as a terminal of a given width shows it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from helpers import tiny_recipe
from lightning.pytorch.loggers import CSVLogger

from f2tune.recipe import validate_recipe
from f2tune.train.run import FitResult, fit
from f2tune.train.summary import print_summary


def test_metric_names_are_shown_whole_on_a_narrow_terminal(monkeypatch, capsys) -> None:
    """Two metrics of one task differ only at the end of their names (`grounding_acc` and
    `grounding_acc_merged`): cut short with an ellipsis, their rows would read the same."""
    monkeypatch.setenv("COLUMNS", "60")
    names = ["val/CAPTION_TO_PHRASE_GROUNDING/grounding_acc", "val/CAPTION_TO_PHRASE_GROUNDING/grounding_acc_merged"]
    result = FitResult(run_dir=Path("runs/x"), metrics_after={names[0]: 0.25, names[1]: 0.5})
    trainer = SimpleNamespace(global_step=2, callback_metrics={}, callbacks=[], checkpoint_callbacks=[], loggers=[])
    print_summary(result, trainer)  # type: ignore[arg-type]
    shown = capsys.readouterr().err
    assert "…" not in shown
    rows = [line for line in shown.splitlines() if line.startswith("│")]
    assert "".join(row.split("│")[1].strip() for row in rows) == "".join(names)  # folded in its column
    assert max(map(len, rows)) <= 60


def test_wide_terminal_shows_one_line_per_metric(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = FitResult(run_dir=Path("runs/x"), metrics_after={"val/loss": 1.5})
    trainer = SimpleNamespace(global_step=2, callback_metrics={}, callbacks=[], checkpoint_callbacks=[], loggers=[])
    print_summary(result, trainer)  # type: ignore[arg-type]
    rows = [line for line in capsys.readouterr().err.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and "val/loss" in rows[0] and "1.5000" in rows[0]


def test_a_missing_loss_curve_says_why(capsys, tmp_path) -> None:
    """It said "needs the csv logger" also where the csv logger was on and nothing was logged yet."""
    result = FitResult(run_dir=Path("runs/x"))
    for loggers, why in (([], "add csv to trainer.loggers"), ([CSVLogger(tmp_path)], "no loss logged")):
        trainer = SimpleNamespace(
            global_step=2, callback_metrics={}, callbacks=[], checkpoint_callbacks=[], loggers=loggers
        )
        print_summary(result, trainer)  # type: ignore[arg-type]
        assert "f2tune: loss curve: - (" in capsys.readouterr().err.split(why)[0].splitlines()[-1]


def test_a_best_score_never_finite_is_said_so(capsys) -> None:
    """Lightning stores a NaN val/loss as inf: the summary said `(val/loss inf)` under a table of nan."""
    result = FitResult(run_dir=Path("runs/x"), best_checkpoint="runs/x/checkpoints/best-step=2.ckpt")
    best = SimpleNamespace(monitor="val/loss", best_model_score=torch.tensor(float("inf")))
    trainer = SimpleNamespace(global_step=2, callback_metrics={}, callbacks=[], checkpoint_callbacks=[best], loggers=[])
    print_summary(result, trainer)  # type: ignore[arg-type]
    assert "best-step=2.ckpt (val/loss not finite at any validation)" in capsys.readouterr().err


def test_the_best_checkpoint_is_named_as_the_run_folder_is(tmp_path, monkeypatch) -> None:
    """Lightning made the best checkpoint's path absolute: the summary gave it in full between the
    relative paths of the run's other files."""
    monkeypatch.chdir(tmp_path)
    recipe = tiny_recipe(Path("."), eval={"before_fit": False, "metric": "none"}, export={"enabled": False})
    result = fit(validate_recipe(recipe))
    assert result.best_checkpoint == str(Path("runs/t/checkpoints/best-step=4.ckpt"))
    assert result.last_checkpoint == str(Path("runs/t/checkpoints/last.ckpt"))
