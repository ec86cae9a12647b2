"""Atomic export folders: whole or absent, never half-written."""

from __future__ import annotations

import pytest

from f2tune.export.atomic import atomic_folder


def test_new_folder_appears_complete(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_failure_keeps_previous_export_and_leaves_no_temp(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_success_replaces_previous_export(tmp_path):
    target = tmp_path / "export"
    for name in ("first.txt", "second.txt"):
        with atomic_folder(target) as staging:
            (staging / name).write_text(name)
    assert sorted(p.name for p in target.iterdir()) == ["second.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
