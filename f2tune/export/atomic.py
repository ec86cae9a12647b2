"""Folders that appear whole or not at all: written under a temporary name, then renamed.

Replacing a folder deletes what it held, so only a folder f2tune wrote for the same purpose (it
holds the `OUTPUT_MARKER` file naming that purpose) or an empty one is replaced: `--out ~/photos`
by mistake must not delete the photos.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from f2tune.errors import RunError, first_few

OUTPUT_MARKER = ".f2tune-output"
"""The file in every folder written here; it holds what wrote it (`export`, `predict`, `convert`)."""


def check_writable(folder: Path, what: str) -> None:
    """Raise `RunError` unless `folder` can be made (or exists) and written: a folder made and
    removed in its nearest existing parent proves it, where permission bits do not (a root user
    passes them on a read-only mount). Before the work, so that a mistyped output path stops a
    command at once, not at its first checkpoint, after the data and the model have loaded."""
    folder = Path(folder).absolute()
    parent = next(path for path in (folder, *folder.parents) if path.exists())
    if not parent.is_dir():
        raise RunError(f"{folder}, {what}, cannot be made: {parent} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".f2tune-write-test-", dir=parent))
    except OSError as err:
        raise RunError(f"{folder}, {what}, cannot be written: {err.strerror} in {parent}") from None


def check_replaceable(target: Path, purpose: str) -> None:
    """Raise `RunError` unless `target` is absent, an empty folder, or f2tune's `purpose` output,
    in a folder that can be written.

    Called before the work too, so that a folder that cannot be replaced stops a command before
    its hours of work, not after.

    The folder this process works in (`--out .`), or one holding it, is refused too: replacing it
    would move the working folder away and delete it, leaving the shell in a folder that is gone."""
    target = _absolute(target)
    check_writable(target.parent, f"the folder of the {purpose} output {target}")
    if not target.exists() and not target.is_symlink():
        return
    cwd = Path.cwd().resolve()
    if cwd == target.resolve() or target.resolve() in cwd.parents:
        raise RunError(
            f"{target} is (or holds) the folder this command runs in ({cwd}); it cannot be replaced by the "
            f"{purpose} output. Give the output a folder of its own (a new name, such as ./{purpose}), or run "
            "the command from another folder."
        )
    if not target.is_dir():
        raise RunError(f"{target} exists and is not a folder; give a new folder for the {purpose} output")
    entries = sorted(entry.name for entry in target.iterdir())
    marker = target / OUTPUT_MARKER
    written_by = marker.read_text().strip() if marker.is_file() else None
    if not entries or written_by == purpose:
        return
    origin = f"the {written_by} output of f2tune" if written_by else "files f2tune did not write"
    raise RunError(
        f"{target} exists and holds {origin} ({first_few(entries)}); it would be replaced by the {purpose} output. "
        "Give a new or empty folder, or remove this one yourself."
    )


@contextmanager
def atomic_folder(target: Path, purpose: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; on success it replaces `target`, which
    must be replaceable (`check_replaceable`), and holds the `OUTPUT_MARKER` for `purpose`.

    If the block raises (or the process dies), `target` keeps its previous content and the
    temporary folder is removed (or, after a kill, left as a dot-named `.NAME.tmp-*` folder).
    """
    target = _absolute(target)
    check_replaceable(target, purpose)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        # mkdtemp makes it 0700 (private while it is a temporary name); once renamed it is an output
        # folder like any other, readable by whom a plain mkdir's folder would be (the group's share).
        staging.chmod(0o777 & ~_umask())
        yield staging
        (staging / OUTPUT_MARKER).write_text(purpose + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


def _absolute(target: Path | str) -> Path:
    """`target` as an absolute path with `.` and `..` taken out, so that it has a name and a parent:
    `Path(".").name` is empty, and `--out .` made the staging folder `..tmp-*`, then failed the
    final rename after all the work (`..` lexically, as the shell means it: a symlinked output
    folder is replaced as the link, not followed)."""
    return Path(os.path.abspath(target))


def _umask() -> int:
    """The process's umask, read from /proc where it can be (Linux), so that no other thread creates
    a file in the moment `os.umask` has to set it to read it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the strictest plausible value while it is read, restored at once
    os.umask(mask)
    return mask
