"""Reading checkpoints: a file that is not a whole one is named, never a torch traceback; the best
checkpoint of a run is found without a readable last.ckpt."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_recipe

from f2tune.errors import RunError
from f2tune.export.checkpoint import read_checkpoint
from f2tune.recipe import validate_recipe
from f2tune.train.locate import (
    checkpoint_contents,
    checkpoint_step,
    last_checkpoint,
    newest_best_file,
    recorded_best,
    run_checkpoint,
)
from f2tune.train.resume import resume_point


@pytest.fixture
def whole(tmp_path):
    path = tmp_path / "whole.ckpt"
    torch.save({"global_step": 7, "state_dict": {"w": torch.arange(50_000.0)}}, path)
    return path


def broken_copies(whole):
    data = whole.read_bytes()
    copies = {"empty": b"", "cut short": data[: len(data) // 2], "not a checkpoint": b"step 7\n"}
    for name, content in copies.items():
        path = whole.with_name(f"{name.replace(' ', '_')}.ckpt")
        path.write_bytes(content)
        yield name, path


def test_a_whole_checkpoint_reads(whole):
    assert checkpoint_step(whole) == 7
    assert checkpoint_contents(whole, mmap=False)["state_dict"]["w"][-1] == 49_999


@pytest.mark.parametrize("reader", ["step", "resume", "export"])
def test_a_checkpoint_cut_short_or_of_another_kind_is_named(whole, tmp_path, reader):
    recipe = validate_recipe(tiny_recipe(tmp_path))
    read = {
        "step": checkpoint_step,
        "resume": lambda path: resume_point(recipe, path),
        "export": read_checkpoint,
    }[reader]
    for name, path in broken_copies(whole):
        with pytest.raises(RunError, match=rf"^{path} cannot be read as a checkpoint \(.+\): it is cut short"):
            read(path)
        if name == "empty":
            with pytest.raises(RunError, match=r"\(an empty file\)"):
                read(path)


def best_record(checkpoints, best: str) -> dict:
    """The callbacks of a checkpoint as a run with data.val saves them (the best-checkpoint callback
    records the best file by its path at training time)."""
    return {
        "ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'}": {
            "monitor": "val/loss",
            "best_model_path": str(checkpoints / best),
        },
        "ModelCheckpoint{'monitor': None, 'mode': 'min'}": {"monitor": None, "best_model_path": ""},
    }


@pytest.fixture
def run_dir(tmp_path):
    """A run kept top 2 by val/loss: step 2 is best, step 4 kept but worse, last.ckpt at step 6."""
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for step in (2, 4, 6):
        name = "last.ckpt" if step == 6 else f"best-step={step}.ckpt"
        torch.save({"global_step": step, "callbacks": best_record(checkpoints, "best-step=2.ckpt")}, checkpoints / name)
    return tmp_path / "run"


@pytest.mark.parametrize("last_is", ["cut short", "missing"])
def test_the_best_checkpoint_is_found_without_a_readable_last(run_dir, last_is):
    """The newest best-step=N.ckpt records which one is best, as last.ckpt would."""
    last = last_checkpoint(run_dir)
    if last_is == "missing":
        last.unlink()
    else:
        last.write_bytes(last.read_bytes()[:100])
    assert run_checkpoint(run_dir, "best") == run_dir / "checkpoints" / "best-step=2.ckpt"
    assert recorded_best(last) == ("val/loss", "best-step=2.ckpt")


def test_the_newest_best_checkpoint_is_taken_by_step_then_version(tmp_path):
    for name in ("best-step=9.ckpt", "best-step=10.ckpt", "best-step=10-v1.ckpt", "best-step=11.ckpt.tmp"):
        (tmp_path / name).touch()
    assert newest_best_file(tmp_path) == tmp_path / "best-step=10-v1.ckpt"


def test_a_best_that_cannot_be_found_names_the_files_and_what_to_pass(run_dir):
    checkpoints = run_dir / "checkpoints"
    last = last_checkpoint(run_dir)
    last.write_bytes(b"")
    newest = checkpoints / "best-step=4.ckpt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(RunError) as err:
        run_checkpoint(run_dir, "best")
    assert str(err.value).startswith(
        f"finding the best checkpoint: {last} cannot be read (an empty file) and the newest best checkpoint, {newest}, "
        "cannot be read ("
    )
    assert str(err.value).endswith(
        f"pass a whole .ckpt file instead of the run folder (one of {checkpoints}'s best-step=N.ckpt)"
    )
    for name in ("best-step=2.ckpt", "best-step=4.ckpt"):
        (checkpoints / name).unlink()
    with pytest.raises(RunError) as err:
        run_checkpoint(run_dir, "best")
    assert str(err.value) == (
        f"finding the best checkpoint: {last} cannot be read as a checkpoint (an empty file) and {checkpoints} "
        "holds no best-step=N.ckpt to take the best from; pass a whole .ckpt file instead of the run folder"
    )
    assert run_checkpoint(run_dir, "last") == last  # what it is, told apart when it is read
