"""Reading checkpoints: a file that is not a whole one is named, never a torch traceback."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_recipe

from f2tune.errors import RunError
from f2tune.export.checkpoint import read_checkpoint
from f2tune.recipe import validate_recipe
from f2tune.train.locate import checkpoint_contents, checkpoint_step
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
