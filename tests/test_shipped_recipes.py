"""Every shipped recipe runs as its header says: `f2tune fit`, then each `f2tune check-data|validate|test`
line of its header, on the tiny model and stand-in data written where the recipe looks for its own.

Only what a CPU test or the tiny model cannot have is overridden (model, devices, precision, steps,
batch, workers, generation length, target length); data formats, tasks, metrics, adaptation,
augmentation, grouping and export stay as shipped, so a recipe whose keys no longer fit the readers,
the tasks or the metrics fails here instead of on a user's cluster.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import REPO
from recipe_data import write_recipe_data

from f2tune.cli import main
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.eval.evaluator import task_label
from f2tune.recipe import dump_recipe, load_recipe

ALL_RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
RECIPES = [p for p in ALL_RECIPES if p.name != "demo_shapes.yaml"]  # test_demo.py runs the demo
TINY_RUN = [
    "model.name_or_path=f2tune://tiny",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.precision=32-true",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.check_val_every_n_epoch=null",
    "trainer.log_every_n_steps=1",
    "data.batch_size=2",
    "data.num_workers=0",
    "eval.max_samples=2",
    "eval.max_new_tokens=8",
    "eval.every_n_validations=1",
    "data.max_target_tokens=256",  # the tiny model's decoder positions (Florence-2's: 1024)
]


def header_commands(path: Path, command: str) -> list[list[str]]:
    """The arguments after `f2tune <command>` on each line of the recipe's header that runs it."""
    header = path.read_text().split("\n\n")[0]
    found = []
    for line in header.splitlines():
        start = line.find(f"f2tune {command} ")
        if start >= 0:
            found.append(shlex.split(line[start:].split("#")[0])[2:])
    return found


def change_lines(path: Path) -> list[list[str]]:
    """The arguments after `f2tune fit` on each `# Change:` line of the recipe's header."""
    header = path.read_text().split("\n\n")[0]
    lines = [line for line in header.splitlines() if line.startswith("# Change:")]
    return [shlex.split(line[line.find("f2tune fit ") :].split("#")[0])[2:] for line in lines]


def tasks_of(recipe, split: str) -> set[str]:
    """The metric-name labels (`OD`, `CAPTION`, `custom`) of the tasks in the split's data."""
    sources = getattr(recipe.data, split)
    return {task_label(s.task) for source in sources for s in read_source(source, RecordProblems("error"))}


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_fits_exports_and_evaluates_as_its_header_says(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # recipe data paths are relative to the working directory
    overrides = [*TINY_RUN, f"trainer.output_dir={tmp_path / 'runs'}"]
    recipe = load_recipe(path, overrides)
    write_recipe_data(recipe, tmp_path)

    assert main(["fit", str(path), *overrides]) == 0
    run_dir = tmp_path / "runs" / path.stem
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    export = run_dir / "export"
    kind = "adapter_config.json" if recipe.adaptation.method == "lora" and not recipe.lora.merge else "config.json"
    assert (export / kind).is_file() and (export / "README.md").is_file()

    for args in header_commands(path, "check-data"):
        assert main(["check-data", str(path), *args[1:], *overrides]) == 0
    evaluations = [(c, args) for c in ("validate", "test") for args in header_commands(path, c)]
    assert evaluations, f"{path.name}: its header names no `f2tune validate` or `f2tune test` line"
    for command, args in evaluations:
        assert args[0] == f"recipes/{path.name}", args
        assert main([command, str(path), *args[1:], *overrides]) == 0
        split = "val" if command == "validate" else "test"
        written = max((run_dir / "predictions").glob(f"{split}-step*/metrics.json"), key=lambda p: p.stat().st_mtime)
        metrics = json.loads(written.read_text())
        assert {key.split("/")[0] for key in metrics} == tasks_of(recipe, split), sorted(metrics)


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: p.stem)
def test_the_headers_change_line_loads_and_changes_the_recipe(path, capsys):
    """A `# Change:` line is copied as it is by whoever wants another setting: it must name this
    recipe, load (`--print-config`: the recipe with the overrides, checked, nothing else read) and
    change what it says it changes (each override alone gives another effective recipe)."""
    lines = change_lines(path)
    assert lines, f"{path.name}: its header has no `# Change:  f2tune fit recipes/{path.name} key=value` line"
    shipped = dump_recipe(load_recipe(path, []))
    for args in lines:
        assert args[0] == f"recipes/{path.name}" and len(args) > 1, args
        overrides = args[1:]
        assert main(["fit", str(path), *overrides, "--print-config"]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out == dump_recipe(load_recipe(path, overrides))
        for override in overrides:
            assert dump_recipe(load_recipe(path, [override])) != shipped, f"{path.name}: {override} changes nothing"
