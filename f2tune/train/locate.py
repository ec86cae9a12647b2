"""Finding a run's checkpoints (`last`, and `best` as the checkpoint callback recorded it) and
reading them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from f2tune.errors import RunError, first_sentence

BEST_FILENAME = "best-{step}"
"""The best-checkpoint callback's `filename`: Lightning writes `best-step=N.ckpt` (`-vK` when a name repeats)."""

BEST_FILE = re.compile(r"best-step=(\d+)(?:-v(\d+))?\.ckpt")
"""The names `BEST_FILENAME` gives, with the step and the version."""


class UnreadableCheckpoint(RunError):
    """A checkpoint file that is not a whole one; `reason` says what was found instead."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def run_checkpoint(run_dir: Path, which: str) -> Path:
    """`best` (kept by trainer.monitor; `last` when the run kept none) or `last` of a run folder.

    The best checkpoint is looked up by file name in the checkpoint folder, so a run folder that
    was moved or copied since training still resolves.
    """
    if which not in ("best", "last"):
        raise RunError(f"--checkpoint: expected best or last for a run folder, got {which!r}")
    last = last_checkpoint(run_dir)
    if which == "best":
        _, best = recorded_best(last)
        if best and (last.parent / best).is_file():
            return last.parent / best
    if not last.is_file():
        raise RunError(f"no checkpoint in {last.parent}: train first (f2tune fit), or pass a .ckpt path")
    return last


def recorded_best(last: Path) -> tuple[str | None, str | None]:
    """The monitor and the file name of the best checkpoint as `last` records them: (None, None)
    for a run without data.val (no best is kept), (monitor, None) when none was saved
    (`trainer.save_top_k: 0`, or no validation before training ended).

    Where `last` is missing or cut short (a copy that did not finish, a full disk, removed to save
    space), the newest `best-step=N.ckpt` beside it answers instead: each best checkpoint holds the
    callback's record as it was saved, and any later improvement would have written a newer one.
    """
    try:
        return _monitored_best(checkpoint_contents(last))
    except (FileNotFoundError, UnreadableCheckpoint) as err:
        newest = newest_best_file(last.parent)
        if newest is None:
            if isinstance(err, FileNotFoundError):
                return None, None  # no checkpoint at all: the caller says so
            raise RunError(
                f"finding the best checkpoint: {last} cannot be read as a checkpoint ({err.reason}) and "
                f"{last.parent} holds no best-step=N.ckpt to take the best from; pass a whole .ckpt file "
                "instead of the run folder"
            ) from None
        try:
            return _monitored_best(checkpoint_contents(newest))
        except UnreadableCheckpoint as unreadable:
            last_state = "is missing" if isinstance(err, FileNotFoundError) else f"cannot be read ({err.reason})"
            raise RunError(
                f"finding the best checkpoint: {last} {last_state} and the newest best checkpoint, {newest}, "
                f"cannot be read ({unreadable.reason}), so which one is best is unknown; pass a whole .ckpt file "
                f"instead of the run folder (one of {last.parent}'s best-step=N.ckpt)"
            ) from None


def newest_best_file(folder: Path) -> Path | None:
    """The best checkpoint saved last in `folder` (highest step, then version), or None."""
    found = [(BEST_FILE.fullmatch(p.name), p) for p in folder.glob("best-step=*.ckpt")]
    steps = [((int(m[1]), int(m[2] or 0)), p) for m, p in found if m]
    return max(steps)[1] if steps else None


def _monitored_best(contents: dict[str, Any]) -> tuple[str | None, str | None]:
    for key, value in contents.get("callbacks", {}).items():
        # the writers of last.ckpt are ModelCheckpoints too, without a monitor
        if "ModelCheckpoint" in key and value.get("monitor"):
            best = value.get("best_model_path")
            return value["monitor"], Path(best).name if best else None
    return None, None


def checkpoint_step(path: str | Path | None) -> int:
    """The optimizer step a checkpoint was saved at (0 for no checkpoint: the untrained weights)."""
    if path is None:
        return 0
    return int(checkpoint_contents(path).get("global_step", 0))


def checkpoint_contents(path: str | Path, mmap: bool = True) -> dict[str, Any]:
    """A checkpoint's contents (tensors on the CPU, plain types only), or an `UnreadableCheckpoint`
    naming the file when it is not a whole checkpoint: torch's own errors for a file cut short (a
    copy that did not finish, a full disk) say "central directory", "Invalid argument" or nothing
    useful.
    """
    try:
        try:
            return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
        except RuntimeError as err:
            if not (mmap and str(err).startswith("mmap can only be used")):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # what it is, if not a zip file
    except FileNotFoundError:  # callers name a missing checkpoint in their own terms
        raise
    except Exception as err:  # unpickling bytes that are not a pickle raises whatever they lead to
        reason = "an empty file" if Path(path).stat().st_size == 0 else first_sentence(err)
        raise UnreadableCheckpoint(
            f"{path} cannot be read as a checkpoint ({reason}): it is cut short (a copy that did not "
            "finish, a full disk) or not a .ckpt file; use another one (the run's checkpoints/ folder "
            "keeps the best ones beside last.ckpt)",
            reason,
        ) from None
