"""The LightningModule: loss on teacher-forced targets, validation loss, and a generation metric."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanMetric
from transformers import Florence2Processor

from f2tune.config import Recipe
from f2tune.eval.generate import MODEL_INPUTS, generate_text
from f2tune.eval.metrics import SCORERS
from f2tune.train.optim import build_optimizer, build_scheduler


class Florence2Module(pl.LightningModule):
    """Wraps a (possibly peft-wrapped) Florence-2 for Lightning.

    Checkpoints of LoRA runs hold only the trainable weights: the frozen base is reloaded from
    `model.name_or_path`, which keeps a LoRA checkpoint of Florence-2-large at megabytes, not 3 GB.
    """

    def __init__(self, model: nn.Module, processor: Florence2Processor, recipe: Recipe) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.recipe = recipe
        self.save_hyperparameters({"recipe": recipe.model_dump(mode="json")})
        self.strict_loading = recipe.adaptation.method != "lora"
        self.metric_name = recipe.eval.metric
        self.val_score = MeanMetric()
        self.val_scored = 0
        self.model.train()

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).loss

    def on_train_start(self) -> None:
        # from_pretrained returns eval mode (dropout off); make sure training really trains.
        self.model.train()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        size = len(batch.get("ids", []))
        self._log_count("data/skipped_records", batch["skipped_records"], size)
        if not size:
            return None
        loss = self(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        self._log_count("data/truncated_targets", batch["truncated_targets"], size)
        self._log_count("data/dropped_annotations", batch["dropped_annotations"], size)
        return loss

    def _log_count(self, name: str, count: int, batch_size: int) -> None:
        """A per-epoch total over all processes (e.g. truncated targets), in the logs."""
        self.log(
            name,
            float(count),
            reduce_fx="sum",
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=max(batch_size, 1),
        )

    def on_validation_epoch_start(self) -> None:
        self.val_scored = 0

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        size = len(batch.get("ids", []))
        if not size:
            return
        self.log("val/loss", self(batch), prog_bar=True, sync_dist=True, batch_size=size)
        if self.metric_name == "none" or self.val_scored >= self.recipe.eval.max_samples:
            return
        predictions = generate_text(self.model, self.processor, batch, self.recipe.eval)
        scorer = SCORERS[self.metric_name]
        scores = torch.tensor([scorer(p, t) for p, t in zip(predictions, batch["targets"])], device=self.device)
        self.val_score.update(scores)
        self.val_scored += size

    def on_validation_epoch_end(self) -> None:
        if self.metric_name != "none" and self.val_scored:
            self.log(f"val/{self.metric_name}", self.val_score.compute(), prog_bar=True, sync_dist=False)
        self.val_score.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.recipe.optim)
        scheduler = build_scheduler(optimizer, self.recipe.optim, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.recipe.adaptation.method == "lora":
            trainable = {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
