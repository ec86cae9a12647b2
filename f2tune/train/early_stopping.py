"""Early stopping on the recipe's monitor (`trainer.early_stopping_patience`)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping


class ValidationEarlyStopping(EarlyStopping):
    """Lightning's early stopping, decided at the end of each validation, with the recipe's patience.

    Left to Lightning, a run validating at each epoch's end decides in `on_train_epoch_end`: after
    last.ckpt is written at the validation's end, which then holds the counters of the validation
    before; and a resume from it finishes the restored epoch by calling that hook again, with no
    monitored value logged yet, where the strict check stops the run. Decided at the validation's
    end instead, before the checkpoint writers (Lightning runs those last). Lightning also restores
    `patience` from the checkpoint: a patience changed on `--resume` (which the log reports as a
    change) is kept here.
    """

    def __init__(self, monitor: str, patience: int, mode: str) -> None:
        super().__init__(monitor, patience=patience, mode=mode, check_on_train_epoch_end=False)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
