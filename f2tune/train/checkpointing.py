"""Checkpoints that survive a crash and resume exactly.

Lightning 2.6's `TorchCheckpointIO` serialises the whole checkpoint into memory, then writes it
inside an fsspec transaction. For local paths that transaction writes to a file made by
`tempfile.mkstemp()` in the system temp folder and commits with `shutil.move`: when that folder is
on another file system (a tmpfs `/tmp`, a node-local disk beside a shared run folder) the move is a
copy, and a kill during the copy leaves a truncated `last.ckpt` — the one file `--resume` needs.
`AtomicCheckpointIO` writes beside the target, syncs, then renames, which is atomic on POSIX.

Lightning does not restore the random number generators either, so dropout after a resume would
differ from an uninterrupted run; `RandomState` carries them in the checkpoint.

With `optim.accumulate`, a checkpoint written between two batches of one optimizer step would hold
the weights of the step before and a data position past the batches whose gradients were summed
but not applied: a resume would skip them. `WholeStepCheckpoint` writes last.ckpt only at
validations that fall between optimizer steps (the stop on request waits for the step's end too).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into `.NAME.tmp-*` in the target folder, fsync, `os.replace`: a crash at any
    moment leaves the previous checkpoint whole (and at worst a dot-named temporary file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own transaction
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staging, target)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise


class RandomState(pl.Callback):
    """Saves the torch (CPU and CUDA), numpy and Python generators with each checkpoint and puts
    them back when training resumes, so dropout draws the masks the uninterrupted run would have.

    Restored in `on_train_start`, after Lightning has built the data iterator (which draws a seed
    from the torch generator in every run, resumed or not). Under DDP every rank starts from the
    same seed and draws alike, so rank 0's state is every rank's.

    A checkpoint written during fit's validation (`checkpoint_before_validation`) resumes by running
    that validation again, whose loader draws again: it carries the generators as they were at the
    end of the training step before it, kept in `before_validation`.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self.before_validation: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        """Kept at every step: a validation due after it draws in its loader before any hook."""
        self.before_validation = self.state_dict()

    def state_dict(self) -> dict[str, Any]:
        name, keys, position, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": (name, keys.tolist(), position, has_gauss, gauss),  # plain types: Lightning loads weights_only
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        name, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class FinalStep(pl.Callback):
    """Writes `last.ckpt` at the step training ends, where its writers (at each validation, at each
    epoch's end without validation data) would leave it steps behind: a run that ended between two
    validations, or before its first, resumed steps back, or found no checkpoint at all.

    The state is taken at the end of the last training step, as a step-interval writer takes it
    (Lightning's own state after the fit marks a cut-short epoch as finished, and a resumed run
    would skip the rest of it), and written when training ends unless a validation came after it,
    whose writer has saved that step with the validation's results. Taken, not written: the state
    refers to the live weights, which no longer change, so it costs no copy (under FSDP, the
    gathered state dict Lightning makes for any checkpoint).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        last_step = 0 < trainer.max_steps <= trainer.global_step
        last_epoch = trainer.is_last_batch and trainer.max_epochs not in (None, -1)
        if last_step or (last_epoch and trainer.current_epoch + 1 >= trainer.max_epochs):
            self._state = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._state = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state is not None:
            trainer.strategy.save_checkpoint(self._state, self.path)
            trainer.strategy.barrier("FinalStep")
            self._state = None


def checkpoint_before_validation(trainer: pl.Trainer) -> dict[str, Any]:
    """The checkpoint of a fit stopped during one of its validations, as if that validation had
    not begun: resumed, the validation runs again from its first batch, then training goes on.

    Lightning's own resume from a checkpoint written mid-validation runs only the batches not yet
    seen, from the loader's start (the first ones again, the last ones never), and the evaluator's
    sums are not in any checkpoint: metrics of part of the data, logged as the whole. The training
    step before the validation is whole, so its weights and optimizer state are what to keep.
    """
    checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    # The totals count this epoch's validation batches; those of its earlier validations stay.
    earlier = progress["total"]["completed"] - progress["current"]["completed"]
    # One batch fetched, none processed: Lightning's "restarted mid-evaluation", with nothing to skip.
    progress["current"] = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    progress["total"] = {"ready": earlier + 1, "started": earlier + 1, "processed": earlier, "completed": earlier}
    progress["is_last_batch"] = False
    for callback in trainer.callbacks:
        if isinstance(callback, RandomState) and callback.before_validation is not None:
            checkpoint["callbacks"][callback.state_key] = callback.before_validation
    return checkpoint


def inside_an_accumulated_step(trainer: pl.Trainer) -> bool:
    """Whether the last training batch was summed into gradients that no optimizer step has applied
    yet (`optim.accumulate` > 1, between the window's batches)."""
    return trainer.state.fn == TrainerFn.FITTING and trainer.fit_loop.epoch_loop._should_accumulate()


class WholeStepCheckpoint(ModelCheckpoint):
    """A last.ckpt writer that skips validations inside an accumulated optimizer step (an integer
    `trainer.val_check_interval` that is no multiple of `optim.accumulate`, or a fraction of an
    epoch): see the module docstring."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not inside_an_accumulated_step(trainer):
            super().on_validation_end(trainer, pl_module)
