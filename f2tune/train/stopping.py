"""A fit stopped on request (SIGTERM from a scheduler, Ctrl-C) keeps its progress and says so.

Lightning stops a fit on SIGTERM at the end of a training step (with `optim.accumulate`, f2tune's
`WholeStepTrainer` holds it to the end of the optimizer step) by raising `SIGTERMException`, a
`SystemExit`: left alone, the process exits with status 0, nothing saved since the last
`last.ckpt`, and a script's `f2tune fit ... && f2tune push ...` goes on as if training had ended.
`StopOnRequest` writes `last.ckpt` at that step, and `fit` turns the exception into `RunStopped`,
whose message says what `--resume` will continue from and whose exit status is the signal's.

Ctrl-C asks for the same stop (Lightning's own handling of it exits at once, mid-step, without a
checkpoint); a second Ctrl-C stops at once. A stop during one of fit's validations saves the
training step before it, with that validation marked as not begun (`checkpoint_before_validation`).

Under DDP, Lightning's SIGTERM handler broadcasts from rank 0 inside the handler, wherever the
process is: a SIGTERM that reaches one process other than rank 0 alone (a `kill` of its PID)
pairs that broadcast with whatever collective rank 0 runs next, and the run crashed in gloo/NCCL
without a checkpoint. With more than one process the handler only notes the request here, and
the processes agree at the end of each training and validation batch (one all-reduce of a flag)
before Lightning's own stop is set, on all of them at the same batch. Under DDP rank 0 writes
`last.ckpt` alone, without the barriers of `trainer.save_checkpoint`. Under FSDP each process
holds a shard of the weights and optimizer state, so every process gathers them into the
checkpoint (they stop at the same batch, so they meet there) and rank 0 writes it.

SLURM's requeue signal makes the same stop, and then the job is requeued (`f2tune.train.requeue`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from f2tune.errors import SIGNAL_STATUS, RunStopped
from f2tune.log import say
from f2tune.train.checkpointing import checkpoint_before_validation, inside_an_accumulated_step
from f2tune.train.requeue import requeue_job, requeue_signal

NOTHING, STOP, REQUEUE = 0, 1, 2
"""What a process was asked, in the order the processes' agreement (a maximum) ranks them."""


class StopOnRequest(pl.Callback):
    """Saves `last.ckpt` where Lightning stops for SIGTERM, and turns Ctrl-C and SLURM's requeue
    signal into that stop."""

    def __init__(self, last_checkpoint: Path) -> None:
        self.last_checkpoint = last_checkpoint
        self.by: str | None = None
        """What stopped the run: "SIGTERM", "Ctrl-C" or the requeue signal's name (None: nothing yet)."""
        self.saved_step: int | None = None
        self.during_validation = False
        """Whether the stop came during one of fit's validations (resumed, it runs again)."""
        self.after_training = False
        """Whether the stop came in the validation fit runs after training (resumed, it runs again)."""
        self._pid = os.getpid()
        self._requested = NOTHING
        """Under DDP: what this process was sent (`STOP`: SIGTERM or Ctrl-C; `REQUEUE`: SLURM's
        requeue signal), not yet agreed on with the others."""
        self._trainer: pl.Trainer | None = None
        self.resumes_on_restart = False
        """Whether the command continues the run when started again (`--auto-resume`, `--resume`):
        only then is the job requeued on SLURM's requeue signal (`f2tune.train.requeue`)."""
        self.requeue = False
        """Whether the stop was for SLURM's requeue signal (agreed on by every process)."""
        self._requeue_signal = "SIGUSR1"
        self._said_waiting = False
        """Whether a stop waiting for the end of an accumulated optimizer step was said."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Installed now, after Lightning has noted the process's handlers at the start of the fit:
        it puts them back when the fit ends, however it ends."""
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            signal.signal(signal.SIGINT, self._on_ctrl_c)
            self._trainer = trainer
            if trainer.world_size > 1:
                signal.signal(signal.SIGTERM, self._on_sigterm)
            requeue = requeue_signal(trainer)
            if requeue is not None:
                self._requeue_signal = signal.Signals(requeue).name
                signal.signal(requeue, self._on_requeue_signal)

    def _on_requeue_signal(self, signum: int, frame: FrameType | None) -> None:
        """SLURM's requeue signal: the stop SIGTERM makes, then the job requeued."""
        if os.getpid() != self._pid:
            return
        self.by = self.by or signal.Signals(signum).name
        rank = self._trainer.global_rank
        print(f"f2tune: [rank {rank}] {self.by}: stopping at the end of this batch to requeue the job", file=sys.stderr)
        if self._trainer.world_size == 1:
            self.requeue = True
            self._trainer._signal_connector.received_sigterm = True  # Lightning's stop at the step's end
        else:
            self._requested = REQUEUE

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """Under DDP: the request noted, and passed on to the processes this one launched (as
        Lightning's handler does), without a collective."""
        if os.getpid() != self._pid or self._requested:
            return
        self._requested = STOP
        if self.by != "Ctrl-C":  # each process that was sent it, as Lightning says it (Ctrl-C has said so)
            rank = self._trainer.global_rank
            print(f"f2tune: [rank {rank}] SIGTERM: all processes stop at the end of this batch", file=sys.stderr)
        launcher = self._trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        self._agree_on_stopping(trainer)
        self._at_a_whole_step(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._agree_on_stopping(trainer)
            self._at_a_whole_step(trainer)

    def _at_a_whole_step(self, trainer: pl.Trainer) -> None:
        """Says once that a stop waits for the end of the optimizer step (`WholeStepTrainer`)."""
        if self._said_waiting or not trainer._signal_connector.received_sigterm:
            return
        if inside_an_accumulated_step(trainer):
            say("stopping when this optimizer step's accumulated batches are done (the checkpoint holds whole steps)")
            self._said_waiting = True

    def _agree_on_stopping(self, trainer: pl.Trainer) -> None:
        """Lightning's stop set on every process at once when any of them was asked to stop (all
        of them join each time: one that left out a batch would leave the others waiting)."""
        if trainer.world_size == 1:
            return
        asked = torch.tensor([float(self._requested)], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(asked, op=torch.distributed.ReduceOp.MAX)
        if asked.item() >= STOP:
            self.requeue = asked.item() >= REQUEUE
            if self.requeue:  # in the processes that were not sent it, too
                self.by = self.by or self._requeue_signal
            trainer._signal_connector.received_sigterm = True

    def _on_ctrl_c(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a loader worker forked with this handler, before `WorkerStart`
            return
        if self.by == "Ctrl-C":  # the second: Lightning's own stop, at once
            raise KeyboardInterrupt
        self.by = "Ctrl-C"
        say("Ctrl-C: stopping after this training step and saving checkpoints/last.ckpt (Ctrl-C again: at once)")
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's SIGTERM handler: the stop at the step's end

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self.by = self.by or "SIGTERM"
        if trainer.state.fn != TrainerFn.FITTING:
            self.after_training = trainer.state.fn == TrainerFn.VALIDATING
            return
        self.during_validation = trainer.validating
        sharded = isinstance(trainer.strategy, FSDPStrategy)
        if trainer.world_size == 1 or sharded or (type(trainer.strategy) is DDPStrategy and trainer.is_global_zero):
            # Under DDP rank 0 alone, without the barriers of `trainer.save_checkpoint`: the other
            # processes may stop a step later or be waiting in the next one. Its weights and
            # optimizer state are every process's, and its step is whole. Under FSDP every process
            # (stopped at the same batch) gathers its shards; the strategy has rank 0 write the file.
            checkpoint = (
                checkpoint_before_validation(trainer)
                if trainer.validating
                else trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            )
            trainer.strategy.save_checkpoint(checkpoint, self.last_checkpoint)
            self.saved_step = trainer.global_step

    def stopped(self, trainer: pl.Trainer, recipe_file: Path) -> RunStopped:
        """The error to end the command with once the stop has unwound the fit; `recipe_file`: the
        run's effective recipe, which resumes it whatever overrides started it."""
        by = self.by or "SIGTERM"
        status = SIGNAL_STATUS.get(by, 128 + getattr(signal, by, 0))
        at = f"stopped by {by} at step {trainer.global_step}"
        if self.saved_step is not None:
            kept = f"{self.last_checkpoint} holds step {self.saved_step}"
            if self.during_validation:
                kept += " (its validation runs again first)"
        elif self.last_checkpoint.is_file() and self.after_training:
            kept = f"{self.last_checkpoint} holds step {trainer.global_step}, where training ended"
            kept += " (its validation runs again first)"
        elif self.last_checkpoint.is_file():
            kept = f"{self.last_checkpoint} holds the run as it was last saved"
        else:
            return RunStopped(f"{at}, before any checkpoint was saved: the run starts over", status)
        if self.requeue and trainer.is_global_zero:
            if not self.resumes_on_restart:
                kept += " (the job is not requeued: its command starts a new run, `--auto-resume` would continue it)"
            else:
                requeued, said = requeue_job()
                if requeued:
                    return RunStopped(f"{at} (SLURM's requeue signal): {kept}; {said}", status)
                kept += f" ({said})"
        return RunStopped(f"{at}: {kept}; continue with `f2tune fit {recipe_file} --resume`", status)
