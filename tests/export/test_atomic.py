"""Atomic output folders: whole or absent, never half-written, and never replacing a folder that
holds anything but the same command's earlier output."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from f2tune.errors import RunError
from f2tune.export.atomic import OUTPUT_MARKER, atomic_folder, check_replaceable, check_writable


def test_new_folder_appears_complete(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target, "export") as staging:
        (staging / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"
    assert (target / OUTPUT_MARKER).read_text() == "export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_failure_keeps_previous_export_and_leaves_no_temp(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target, "export") as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target, "export") as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_success_replaces_previous_export(tmp_path):
    target = tmp_path / "export"
    for name in ("first.txt", "second.txt"):
        with atomic_folder(target, "export") as staging:
            (staging / name).write_text(name)
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "second.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_empty_folder_is_replaced(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_folder(tmp_path / "out", "predict") as staging:
        (staging / "predictions.jsonl").write_text("{}\n")
    assert (tmp_path / "out" / "predictions.jsonl").is_file()


def test_a_folder_of_other_files_is_never_replaced(tmp_path):
    """`--out ~/photos` by mistake: the photos stay, and the refusal names what the folder holds."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg", "notes.txt"):
        (photos / name).write_text(name)
    with pytest.raises(RunError, match=r"photos exists and holds files f2tune did not write \(a.jpg, b.jpg, notes"):
        with atomic_folder(photos, "predict"):
            pytest.fail("the block must not run")
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "b.jpg", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no staging folder left


def test_another_commands_output_and_a_file_are_not_replaced(tmp_path):
    with atomic_folder(tmp_path / "preds", "predict") as staging:
        (staging / "predictions.jsonl").write_text("{}\n")
    with pytest.raises(RunError, match="holds the predict output of f2tune .* replaced by the export output"):
        check_replaceable(tmp_path / "preds", "export")
    (tmp_path / "model.bin").write_text("x")
    with pytest.raises(RunError, match="model.bin exists and is not a folder"):
        check_replaceable(tmp_path / "model.bin", "export")


def test_an_output_that_cannot_be_written_is_named_before_the_work(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RunError, match=r"notes.txt/out, the run folder, cannot be made: .*notes.txt is a file"):
        check_writable(tmp_path / "notes.txt" / "out", "the run folder")
    with pytest.raises(RunError, match=r"^/proc/f2tune-out, the run folder, cannot be written: .* in /proc$"):
        check_writable(Path("/proc/f2tune-out"), "the run folder")  # refused even to root
    check_writable(tmp_path / "new" / "deeper", "the run folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # the test folder is gone again
    with pytest.raises(RunError, match="the folder of the predict output .*notes.txt/preds"):
        with atomic_folder(tmp_path / "notes.txt" / "preds", "predict"):
            pytest.fail("the block must not run")


@pytest.mark.parametrize("holds", ["nothing", "an earlier export"])
def test_the_folder_one_stands_in_is_refused_before_the_work(tmp_path, monkeypatch, holds):
    """`--out .` passed the check, then failed after all the work (`Path('.')` has no name) and left
    the output in a hidden `..tmp-*` folder; replacing the working folder would delete it from
    under the shell, so it is refused up front, like a folder above it (`--out ..` from inside)."""
    here = tmp_path / "export"
    here.mkdir()
    if holds != "nothing":
        (here / OUTPUT_MARKER).write_text("export\n")
        (here / "model.safetensors").write_text("weights")
        (here / "sub").mkdir()
    monkeypatch.chdir(here)
    for out in [Path("."), "."] + ([Path("sub/..")] if holds != "nothing" else []):
        with pytest.raises(RunError, match=r"export is \(or holds\) the folder this command runs in .* ./export"):
            with atomic_folder(out, "export"):
                pytest.fail("the block must not run")
    if holds != "nothing":
        monkeypatch.chdir(here / "sub")
        with pytest.raises(RunError, match="the folder this command runs in"):
            check_replaceable(Path(".."), "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder beside it
    assert not [p for p in here.iterdir() if p.name.startswith(".") and p.name != OUTPUT_MARKER]


def test_relative_names_with_dots_are_replaced_by_their_own_name(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for out in ("../export", "../export/.", "../work/../export"):
        with atomic_folder(Path(out), "export") as staging:
            (staging / "a.txt").write_text(out)
        assert (tmp_path / "export" / "a.txt").read_text() == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "work"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_an_output_folder_gets_the_mode_of_a_plain_mkdir(tmp_path, umask):
    """mkdtemp's 0700 staging folder became the output: a group member could not read a shared
    export while the run's checkpoints/ beside it was 0755."""
    previous = os.umask(umask)
    try:
        with atomic_folder(tmp_path / "export", "export") as staging:
            (staging / "a.txt").write_text("a")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == 0o777 & ~umask
    assert (tmp_path / "export").stat().st_mode == (tmp_path / "plain").stat().st_mode
