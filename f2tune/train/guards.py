"""Guards that stop a run from silently wasting GPU hours: non-finite losses and gradients, and
out-of-memory errors turned into advice.

Non-finite handling by precision:
- `16-mixed` / `16-true` with a GradScaler: an overflowing gradient is normal while the scaler
  calibrates; the scaler already skips that step and lowers its scale. The guard leaves gradients
  to it and only counts non-finite *losses* (which no scale can fix: the forward pass overflowed).
- `32-true`, `bf16-mixed`, `bf16-true` (no scaler): a non-finite loss or gradient would write NaN
  into the weights and the optimizer state for good, so the guard drops that step's gradients
  (AdamW skips parameters without a gradient: weights and moments stay as they were) and counts it.
The learning-rate schedule still advances over a skipped step.

The gradients' total norm the guard takes to check them is the one number per optimizer step that
clipping and the logs need too: it is logged as `train/grad_norm` and handed to
`Florence2Module.configure_gradient_clipping`, which would otherwise take it again (another pass
over every gradient: 72 ms of a 7 s Florence-2-base step on a CPU).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import FSDPStrategy

from f2tune.errors import F2TuneError
from f2tune.log import warn
from f2tune.train.locate import last_checkpoint


class TrainingStopped(F2TuneError):
    """Training cannot go on as configured; the message says why and what to change."""


class NonFiniteGuard(pl.Callback):
    """Skips optimizer steps whose loss or gradients are NaN/inf, logs the running total as
    `train/nonfinite_steps` at each one (steps that went well log nothing: a `log` call is ~0.3 ms
    of Lightning bookkeeping, and a column of zeros tells nobody anything), and stops the run after
    `max_in_a_row` such steps in a row.

    The decision is taken once per optimizer step (after all accumulated batches) and, under DDP,
    agreed by all processes, so every rank skips or stops together. Weights never take a
    non-finite update, so every checkpoint written meanwhile holds good weights. The losses' and
    gradients' checks stay on the device until then and are read in one transfer: a read per batch
    would stall a GPU between every forward and its backward.
    """

    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.skipped = 0
        self.in_a_row = 0
        self.gradient_norm: torch.Tensor | None = None
        """The current optimizer step's total gradient norm (a tensor on the device) for clipping;
        None when the step is skipped, has no gradients, or each process holds only a shard of them
        (FSDP: a shard's norm is not the model's)."""
        self._losses_finite: torch.Tensor | None = None
        self._ids: list[str] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._ids += list(batch.get("ids", ()))

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).all()
        self._losses_finite = finite if self._losses_finite is None else self._losses_finite & finite

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
        one = torch.ones((), device=pl_module.device)
        norm = total_gradient_norm(optimizer)
        losses = one if self._losses_finite is None else self._losses_finite.to(one)
        losses_ok, norm_value = torch.stack([losses, one if norm is None else norm.to(one)]).tolist()  # the one read
        # Under a scaler, non-finite gradients are its business (it skips the step and lowers its scale).
        grads_ok = scaled or math.isfinite(norm_value)
        bad = not (losses_ok and grads_ok)
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        ids, self._ids, self._losses_finite = self._ids, [], None
        if bad and trainer.world_size > 1:
            losses_ok, ids = _suspects(bool(losses_ok), ids)
        what = "gradients" if losses_ok else "loss"
        sharded = isinstance(trainer.strategy, FSDPStrategy)
        self.gradient_norm = None if bad or sharded else norm
        if not bad:
            self.in_a_row = 0
            if sharded and trainer.world_size > 1 and _logs_now(trainer):
                # each process holds a shard of every gradient: the model's norm is the root of their squares' sum
                squares = torch.tensor(0.0 if norm is None else norm_value**2, device=pl_module.device)
                norm_value = math.sqrt(float(trainer.strategy.reduce(squares, reduce_op="sum")))
                _log_gradient_norm(trainer, pl_module, norm_value)
            elif norm is not None and not sharded and math.isfinite(norm_value):
                _log_gradient_norm(trainer, pl_module, norm_value)
            return
        if not scaled:
            optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        self.in_a_row += 1
        pl_module.log("train/nonfinite_steps", float(self.skipped), on_step=True, on_epoch=False, batch_size=1)
        step = trainer.global_step + 1
        shown = ", ".join(ids[:8]) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")
        if self.in_a_row >= self.max_in_a_row:
            raise TrainingStopped(
                f"training stopped at step {step}: {self.in_a_row} optimizer steps in a row had a non-finite "
                f"{what} (trainer.max_nonfinite_steps={self.max_in_a_row}); samples of the last batch: {shown}. "
                f"No skipped step changed the weights, so the last checkpoint ({_last_checkpoint(trainer)}) is "
                "good: check these samples, lower optim.lr or set optim.grad_clip, or use bf16-mixed instead of "
                "16-mixed, then continue with --resume."
            )
        warn(f"step {step}: non-finite {what}, step skipped ({self.skipped} so far); samples: {shown}")

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "in_a_row": self.in_a_row}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.skipped = state_dict["skipped"]
        self.in_a_row = state_dict["in_a_row"]


def _suspects(loss_finite: bool, ids: list[str]) -> tuple[bool, list[str]]:
    """Whether every process's loss was finite, and the samples to look at: those of the processes
    whose loss was not, else (the gradients alone, summed across processes) every process's. Each
    process knows only its own loss: rank 0, which writes the warning, named its own samples and
    "gradients" where another process's sample had made the loss NaN."""
    gathered: list[tuple[bool, list[str]] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, (loss_finite, ids))
    shares = [share for share in gathered if share is not None]
    if all(finite for finite, _ in shares):
        return True, [i for _, share in shares for i in share]
    return False, [i for finite, share in shares if not finite for i in share]


def total_gradient_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
    """The total 2-norm of the optimizer's gradients, on their device and not read yet (None without
    gradients). It is finite iff every gradient is (or beyond float32's ~1e19 range, which no useful
    step has). `get_total_norm` takes it with foreach kernels: a few launches for all of the
    model's gradients instead of one per tensor."""
    grads = [p.grad for p in parameters_with_gradients(optimizer)]
    return torch.nn.utils.get_total_norm(grads) if grads else None


def parameters_with_gradients(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The optimizer's parameters that hold a gradient this step (what the norm and clipping cover)."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def _log_gradient_norm(trainer: pl.Trainer, pl_module: pl.LightningModule, value: float) -> None:
    """`train/grad_norm` (before clipping) at the optimizer steps whose metrics the loggers write:
    a `log` call at every step would cost ~0.3 ms of Lightning bookkeeping for values nobody sees."""
    if _logs_now(trainer):
        pl_module.log("train/grad_norm", value, on_step=True, on_epoch=False, batch_size=1)


def _logs_now(trainer: pl.Trainer) -> bool:
    """Whether the loggers write this optimizer step's metrics."""
    return (trainer.global_step + 1) % trainer.log_every_n_steps == 0


def _last_checkpoint(trainer: pl.Trainer) -> str:
    path = last_checkpoint(Path(trainer.default_root_dir))
    return str(path) if path.is_file() else "none written yet"


OOM_ADVICE = (
    "out of GPU memory{where}. Ways to fit, roughly by how much they save: a smaller data.batch_size "
    "with a larger optim.accumulate (same effective batch), trainer.gradient_checkpointing: true, "
    "adaptation.method: lora, adaptation.freeze.vision_stages: [0, 1] (or freeze.vision_tower: true), "
    "trainer.precision: bf16-mixed, a smaller data.max_target_tokens."
)


@contextmanager
def oom_advice() -> Iterator[None]:
    """Turn `torch.cuda.OutOfMemoryError` into a `TrainingStopped` naming recipe changes that help."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        where = f" ({first})" if first else ""
        raise TrainingStopped(OOM_ADVICE.format(where=where)) from err
