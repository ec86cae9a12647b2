"""Finding a run's checkpoints: `last`, and `best` as the checkpoint callback recorded it."""

from __future__ import annotations

from pathlib import Path

import torch

from f2tune.errors import RunError


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
    if not last.is_file():
        raise RunError(f"no checkpoint in {last.parent}: train first (f2tune fit), or pass a .ckpt path")
    if which == "best":
        state = torch.load(last, map_location="cpu", mmap=True, weights_only=True)
        for key, value in state.get("callbacks", {}).items():
            # the writers of last.ckpt are ModelCheckpoints too, without a monitor
            best = value.get("best_model_path") if "ModelCheckpoint" in key and value.get("monitor") else None
            if best and (last.parent / Path(best).name).is_file():
                return last.parent / Path(best).name
    return last


def checkpoint_step(path: str | Path | None) -> int:
    """The optimizer step a checkpoint was saved at (0 for no checkpoint: the untrained weights)."""
    if path is None:
        return 0
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("global_step", 0))
