"""Atomic output folders: whole or absent, never half-written, and never replacing a folder that
holds anything but the same command's earlier output."""

from __future__ import annotations

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
