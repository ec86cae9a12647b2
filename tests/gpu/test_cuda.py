"""What only a GPU runs: bf16 autocast on CUDA with LoRA and the image feature cache, epochs whose
batches come without pixels, fp16 with Lightning's loss scaler, compiled blocks, FSDP, a training step
that queues its work without waiting for it, prediction on the GPU, and the benchmark's MFU column.
Marked `gpu`: skipped without a CUDA device (`python -m pytest -m gpu` on one)."""

from __future__ import annotations

import csv
import json
import math

import lightning.pytorch as pl
import pytest
import torch
import transformers.masking_utils
from helpers import PixelsSent, tiny_module, tiny_recipe
from lightning.fabric.utilities.apply_func import move_data_to_device
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText

from f2tune.bench.main import main as bench
from f2tune.bench.setups import mixed_samples
from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.shared_flag import SharedFlag
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.model.adapt import LORA_PRESETS
from f2tune.predict.load import inference_device
from f2tune.predict.run import PredictRequest, predict
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.loss import target_loss
from f2tune.train.run import FitResult, fit

pytestmark = pytest.mark.gpu


class KeepModule(pl.Callback):
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.module = pl_module


def cuda_fit(tmp_path, callbacks: list[pl.Callback] = (), **sections) -> FitResult:
    """The tiny recipe on one GPU, 8 optimizer steps (two epochs of 16 samples), CSV logs."""
    trainer = {"accelerator": "gpu", "devices": 1, "max_steps": 8, "log_every_n_steps": 2, "loggers": ["csv"]}
    raw = tiny_recipe(tmp_path, trainer=trainer | sections.pop("trainer", {}), eval={"metric": "none"}, **sections)
    return fit(validate_recipe(raw), extra_callbacks=list(callbacks))


def logged(result: FitResult, name: str) -> list[float]:
    rows = csv.DictReader((result.run_dir / "logs" / "csv" / "version_0" / "metrics.csv").open())
    return [float(row[name]) for row in rows if row.get(name)]


def test_bf16_lora_fit_reuses_cached_features_and_exports_an_adapter(tmp_path) -> None:
    """With a loader worker and pinned memory: the second epoch's batches come without pixels."""
    keep, sent = KeepModule(), PixelsSent()
    sections = {"adaptation": {"method": "lora"}, "data": {"num_workers": 1}}
    result = cuda_fit(tmp_path, [keep, sent], trainer={"precision": "bf16-mixed"}, **sections)
    assert math.isfinite(result.metrics_after["val/loss"])
    cache = keep.module.feature_cache
    assert cache is not None and cache.hits >= 16, "the second epoch's images come from the cache"
    assert sent.batches == [(epoch, "cuda" if epoch == 0 else None) for epoch in range(2) for _ in range(4)]
    assert (result.export_dir / "adapter_model.safetensors").is_file()
    assert all(math.isfinite(v) for v in logged(result, "train/grad_norm"))


def test_images_the_cache_lacks_are_made_into_pixels_on_the_gpu(processor, tmp_path) -> None:
    """A batch sent without pixels, after the cache was emptied: its decoded images stayed on the
    host (Lightning moves tensors, not them) and their pixels are made for the GPU."""
    module = tiny_module(processor, tmp_path, adaptation={"method": "lora"}).cuda()
    dataset, flag = SampleDataset(shape_samples(4, seed=3)), SharedFlag()
    flag.set(True)
    batch = Florence2Collator(processor, 16, digest_images=True, images_cached=flag)([dataset[i] for i in range(4)])
    batch = move_data_to_device(batch, torch.device("cuda"))
    assert batch["pixel_values"] is None and not batch["decoded_images"].flat.is_cuda
    loss = module(batch)
    assert loss.is_cuda and math.isfinite(loss.item())
    assert module.feature_cache.misses == 4 and not module.feature_cache.complete


def test_fp16_fit_with_the_loss_scaler_clips_and_trains(tmp_path) -> None:
    """16-mixed: Lightning unscales before clipping (the optimizer is not fused there), so the
    guard's norm, which clipping reuses, is the true one."""
    result = cuda_fit(tmp_path, trainer={"precision": "16-mixed"})
    assert math.isfinite(result.metrics_after["val/loss"])
    losses = logged(result, "train/loss")
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    # steps whose scaled gradients overflowed (the scaler's to skip) log no norm; the others a finite one
    assert all(math.isfinite(v) for v in logged(result, "train/grad_norm"))


def test_compiled_bf16_fit_trains(tmp_path) -> None:
    """`trainer.compile` with inductor, where it generates GPU kernels (on a CPU it measured no faster)."""
    result = cuda_fit(tmp_path, trainer={"compile": True, "precision": "bf16-mixed"})
    assert math.isfinite(result.metrics_after["val/loss"])
    assert all(math.isfinite(v) for v in logged(result, "train/loss"))


def test_fsdp_fit_exports_a_model_transformers_loads(tmp_path) -> None:
    result = cuda_fit(tmp_path, trainer={"strategy": "fsdp", "precision": "bf16-mixed"})
    assert math.isfinite(result.metrics_after["val/loss"])
    model = AutoModelForImageTextToText.from_pretrained(result.export_dir)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_lora_step_never_waits_for_the_gpu(tiny_model, processor, monkeypatch) -> None:
    """Forward and backward of the loss with the collator's target lengths under CUDA's sync debug
    mode, which raises at any operation that waits for the device. LoRA: the token table is frozen,
    so torch's embedding backward (which synchronizes on CUDA) is not this loss's. transformers'
    attention-mask builders read the mask to let SDPA skip it; that shortcut is turned off here."""
    monkeypatch.setattr(transformers.masking_utils, "_ignore_bidirectional_mask_sdpa", lambda *a, **k: False)
    monkeypatch.setattr(transformers.masking_utils, "_ignore_causal_mask_sdpa", lambda *a, **k: False)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_PRESETS["language"])
    model = get_peft_model(tiny_model, lora).to("cuda")
    dataset = SampleDataset(mixed_samples(6, 96, seed=1))
    batch = Florence2Collator(processor, 256)([dataset[i] for i in range(6)])
    inputs = {k: batch[k].to("cuda") for k in (*MODEL_INPUTS, "labels")}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = target_loss(model, **inputs, target_lengths=batch["target_lengths"])
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(loss.item())


def test_predict_runs_on_the_gpu_by_default(tiny_dir, tmp_path) -> None:
    image = tmp_path / "shape.png"
    shape_samples(1, seed=8)[0].image.render().save(image)
    out = predict(str(tiny_dir), [image], PredictRequest(task="<OD>"), tmp_path / "out", dtype="bfloat16")
    assert "boxes" in json.loads((out / "predictions.jsonl").read_text())["result"]
    assert inference_device("auto").type == "cuda"


def test_benchmark_on_cuda_fills_the_utilization_column(capsys) -> None:
    assert bench(["--sizes", "tiny", "--modes", "lora", "--steps", "2", "--batch-size", "2", "--device", "cuda"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert rows and all(row.split("|")[-2].strip().endswith("%") for row in rows)
