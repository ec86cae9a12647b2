"""The LightningModule: loss on teacher-forced targets, validation/test loss, and task metrics
from generated text with per-sample predictions written beside the run."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from transformers import Florence2Processor

from f2tune.config import Recipe
from f2tune.data.collate import DATA_COUNTS, image_pixels
from f2tune.data.decoded import DecodedImages
from f2tune.eval.evaluator import Evaluator
from f2tune.log import say
from f2tune.model.adapt import florence2
from f2tune.model.attention import attention_for, use_attention
from f2tune.train.clipping import clip_gradients
from f2tune.train.feature_cache import (
    build_feature_cache,
    frozen_image_features,
    frozen_image_modules,
    image_parts_frozen,
    in_eval_mode,
)
from f2tune.train.fsdp import unwrapped_name
from f2tune.train.loss import target_loss
from f2tune.train.optim import (
    build_optimizer,
    build_scheduler,
    decayed_weights,
    follow_recipe_settings,
    group_settings,
)
from f2tune.train.prediction_folders import write_predictions
from f2tune.train.skipped import check_evaluated, check_trained, forget_step_metrics


class Florence2Module(pl.LightningModule):
    """Wraps a (possibly peft-wrapped) Florence-2 for Lightning.

    Checkpoints of LoRA runs hold only the trainable weights: the frozen base is reloaded from
    `model.name_or_path`, which keeps a LoRA checkpoint of Florence-2-large at megabytes, not 3 GB.
    """

    def __init__(
        self,
        model: nn.Module,
        processor: Florence2Processor,
        recipe: Recipe,
        eval_tasks: Iterable[str] = (),
        output_dir: Path | None = None,
        cache_features: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.recipe = recipe
        self.output_dir = output_dir
        self.save_hyperparameters({"recipe": recipe.model_dump(mode="json")})
        self.strict_loading = recipe.adaptation.method != "lora"
        self.evaluator = Evaluator(eval_tasks, recipe.eval, processor) if recipe.eval.metric != "none" else None
        self.evaluations = 0
        """Validations and tests run, the pre-fit one included: `eval.every_n_validations` counts
        them, and a resumed fit goes on counting (kept in its checkpoints)."""
        self.validated_in_full_at: int | None = None
        """The step of fit's latest validation if it computed every metric (the loss, and generated)."""
        self.evaluated_step: int | None = None
        """The step of the checkpoint `f2tune validate|test` evaluates (predictions are filed under it)."""
        self.predictions_folder: Path | None = None
        """Where the latest evaluation wrote its predictions and metrics."""
        self.generating = False
        self.records: list[dict[str, Any]] = []
        self.evaluated_samples = 0
        """Samples of this process in the current validation or test (none: all skipped)."""
        self.data_counts = dict.fromkeys(DATA_COUNTS, 0)
        self.cache_lookups = {"hits": 0, "misses": 0}
        self.epoch_batches = 0
        self.epoch_samples = 0
        self.model.train()
        # `f2tune validate|test` sees each image once: a cache would only hash them
        self.feature_cache = build_feature_cache(model, recipe, output_dir) if cache_features else None
        # Found once, as the cache is decided once: the search walks every vision weight (0.5 ms at base size).
        # With the cache on, the image parts run only inside it, which switches their mode itself.
        self.frozen_image_modules = frozen_image_modules(model) if self.feature_cache is None else []
        self.image_parts_frozen = image_parts_frozen(model)
        self.decayed_weights = decayed_weights(model)  # before FSDP flattens the weights

    def setup(self, stage: str) -> None:
        """With `model.attn_implementation: auto`, the attention kernels that are fastest for this
        Trainer's device and precision (`attention_for`): known only now, after loading."""
        if self.recipe.model.attn_implementation == "auto":
            device, precision = self.trainer.strategy.root_device.type, self.trainer.precision
            chosen = attention_for(device, str(precision).startswith("bf16"))
            if use_attention(self.model, chosen):
                say(f"attention: {chosen} (model.attn_implementation: auto, for {device} at {precision})")

    def forward(self, batch: dict[str, Any], cached: bool = True) -> torch.Tensor:
        """The batch's loss; a frozen vision tower or projector runs in eval mode (`in_eval_mode`;
        the feature cache computes its missing features so). `cached=False` leaves the feature
        cache out (for a stand-in image, which is not the data's)."""
        with in_eval_mode(self.frozen_image_modules):
            return target_loss(
                self.model,
                batch["labels"],
                batch["input_ids"],
                batch["attention_mask"],
                **self._images(batch, cached),
                target_lengths=batch.get("target_lengths"),
                split_by_length=self.recipe.trainer.strategy != "fsdp",
            )

    def _images(self, batch: dict[str, Any], cached: bool = True) -> dict[str, torch.Tensor]:
        """The batch's images as the loss takes them: pixels for image parts that train, projected
        features for frozen ones, from the feature cache or, with it off, made as it makes them."""
        pixels, base = batch["pixel_values"], florence2(self.model)
        if self.feature_cache is not None and cached:
            pixels_of = partial(self._pixels_of, batch.get("decoded_images"))
            return {"image_features": self.feature_cache.features(base, pixels, batch.get("image_digests"), pixels_of)}
        if self.image_parts_frozen:
            return {"image_features": frozen_image_features(base, pixels)}
        return {"pixel_values": pixels}

    def _pixels_of(self, decoded: DecodedImages, rows: list[int]) -> torch.Tensor:
        """Pixels of a batch's `rows`, made here from the decoded images the loader sent in their
        place (`Florence2Collator` with `images_cached`), as the collator makes them."""
        return image_pixels(self.processor, [decoded.image(row) for row in rows]).to(self.device)

    def on_train_start(self) -> None:
        # from_pretrained returns eval mode (dropout off); make sure training really trains.
        self.model.train()
        scheduler = self.trainer.lr_scheduler_configs[0].scheduler
        follow_recipe_settings(self.trainer.optimizers[0], scheduler, self._optimizer_settings)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        size = len(batch.get("ids", []))
        self.epoch_batches += 1
        self.epoch_samples += size
        for name in DATA_COUNTS:
            self.data_counts[name] += batch[name]
        if not size:
            return self._empty_batch_loss(batch)
        cache = self.feature_cache
        before = (cache.hits, cache.misses) if cache is not None else (0, 0)
        loss = self(batch)
        if cache is not None:
            self.cache_lookups["hits"] += cache.hits - before[0]
            self.cache_lookups["misses"] += cache.misses - before[1]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        return loss

    def _empty_batch_loss(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """A batch whose every record was skipped trains nothing. A process alone skips the step
        (None: no backward, and the optimizer leaves the weights as they are). With others it must
        take part in their gradients' exchange all the same, or they wait for it forever: the
        collator's `stand_in` through the model, times zero, so this process adds zeros to the
        average (the other processes' gradients count for a share the smaller, this step only).
        The step still counts (`global_step`, the schedule)."""
        forget_step_metrics(self.trainer)
        if self.trainer.world_size == 1:
            return None
        return self(batch["stand_in"], cached=False) * 0.0

    def on_train_epoch_start(self) -> None:
        self.data_counts = dict.fromkeys(DATA_COUNTS, 0)
        self.cache_lookups = {"hits": 0, "misses": 0}
        self.epoch_batches = 0
        self.epoch_samples = 0

    def on_train_epoch_end(self) -> None:
        """Each count's epoch total over all processes, logged once (per-step logging of three
        numbers cost ~4 ms a step, a tenth of a small model's step), and with the feature cache on
        the share of this epoch's training images it served (`train/image_cache_hit_rate`, averaged
        over processes): 0 in the first epoch, 1 in the next ones when every image fits. A whole
        epoch of this process's share, every image kept, lets the loader leave out the pixels."""
        skipped = self.data_counts["skipped_records"]
        check_trained(self.trainer, self.device, self.epoch_samples, self.epoch_batches, skipped)
        for name, count in self.data_counts.items():
            self.log(f"data/{name}", float(count), reduce_fx="sum", on_epoch=True, sync_dist=True)
        if self.feature_cache is not None:  # on every process alike: the log synchronizes them
            looked_up = self.cache_lookups["hits"] + self.cache_lookups["misses"]
            rate = self.cache_lookups["hits"] / max(looked_up, 1)
            self.log("train/image_cache_hit_rate", rate, on_epoch=True, sync_dist=True)
            self.feature_cache.end_pass(whole=self.epoch_batches >= len(self.trainer.train_dataloader))

    def on_validation_epoch_start(self) -> None:
        # `every_n_validations` thins fit's validations; `f2tune validate` always generates.
        self._start_evaluation(always=self.trainer.state.fn != TrainerFn.FITTING)

    def on_test_epoch_start(self) -> None:
        self._start_evaluation(always=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def _start_evaluation(self, always: bool = False) -> None:
        every = self.recipe.eval.every_n_validations
        self.generating = self.evaluator is not None and (always or self.evaluations % every == 0)
        self.records = []
        self.evaluated_samples = 0

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        size = len(batch.get("ids", []))
        self.evaluated_samples += size
        sharded = isinstance(self.trainer.strategy, FSDPStrategy) and self.trainer.world_size > 1
        if not size:  # another process holds the split's samples here (or all were skipped)
            if sharded:  # the others' forwards gather weights from this process: it runs them too
                self(batch["stand_in"], cached=False)
                if self.generating:
                    self.evaluator.update(self.model, batch, lockstep=True)
            # weighs nothing, but joins the loss's sync: a process that logged none skipped its all-reduces
            self.log(f"{stage}/loss", torch.zeros((), device=self.device), prog_bar=True, sync_dist=True, batch_size=0)
            return
        # Compiled blocks run eager here: no_grad, another batch size and generation's one-token
        # steps over a growing cache would each compile anew, for work done once per evaluation.
        with torch.compiler.set_stance("force_eager") if self.recipe.trainer.compile else nullcontext():
            self.log(f"{stage}/loss", self(batch), prog_bar=True, sync_dist=True, batch_size=size)
            if self.generating:
                self.records += self.evaluator.update(self.model, batch, lockstep=sharded)

    def _finish_evaluation(self, stage: str) -> None:
        check_evaluated(self.trainer, self.device, self.evaluated_samples, stage)
        self.evaluations += 1
        if stage == "val" and self.trainer.state.fn == TrainerFn.FITTING:
            self.validated_in_full_at = self.trainer.global_step if self.generating or not self.evaluator else None
        if not self.generating:
            return
        results = self.evaluator.compute()
        for name, value in results.items():
            self.log(f"{stage}/{name}", value, prog_bar=name.endswith(("/map", "/cider", "/exact_match")))
        self.evaluator.reset()
        self._write_predictions(stage, results)

    def _write_predictions(self, stage: str, results: dict[str, float]) -> None:
        """This evaluation's records and metrics beside the run (`write_predictions`)."""
        if self.output_dir is None or self.trainer.sanity_checking:
            return
        step = self.trainer.global_step if self.evaluated_step is None else self.evaluated_step
        root = self.output_dir / "predictions"
        pictures = self.recipe.eval.pictures
        self.predictions_folder = write_predictions(self.trainer, root, stage, step, self.records, results, pictures)
        self.records = []

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """`f2tune.train.clipping` where Lightning's clipping is slower or refuses to clip."""
        if not gradient_clip_val:
            return
        if not clip_gradients(self.trainer, optimizer, gradient_clip_val, gradient_clip_algorithm):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any | None = None) -> None:
        """Steps, then frees the gradients at once. Lightning zeroes them inside the next step's
        closure, after its forward: every gradient of the previous step (a full model's worth, 0.9 GB
        for Florence-2-base in fp32) would stay allocated beside that forward's activations. Freeing
        them here lowers the peak and changes nothing else: the next accumulation window starts
        from no gradient either way."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.recipe.optim, self.recipe.trainer.precision, self.decayed_weights)
        self._optimizer_settings = group_settings(optimizer)
        scheduler = build_scheduler(optimizer, self.recipe.optim, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["f2tune_evaluations"] = self.evaluations
        if self.recipe.adaptation.method == "lora":
            # the state dict names weights as the model before FSDP wrapped its layers
            trainable = {f"model.{unwrapped_name(n)}" for n, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.evaluations = checkpoint.get("f2tune_evaluations", 0)
