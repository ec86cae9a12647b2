"""Clear failures at the edges: GPU out of memory during fit, a Hub id that cannot be reached offline."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_recipe

from f2tune.config import ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.model.loading import load_processor
from f2tune.recipe import validate_recipe
from f2tune.train.guards import TrainingStopped
from f2tune.train.run import fit


class OutOfMemoryAtStep2(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_during_fit_becomes_advice_on_the_recipe(tmp_path):
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 3}, eval={"before_fit": False, "metric": "none"})
    raw["data"]["val"] = []
    with pytest.raises(TrainingStopped) as caught:
        fit(validate_recipe(raw), extra_callbacks=[OutOfMemoryAtStep2()])
    message = str(caught.value)
    assert message.startswith("out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB)")
    for change in ("data.batch_size", "optim.accumulate", "trainer.gradient_checkpointing", "adaptation.method: lora"):
        assert change in message
    assert "adaptation.freeze.vision_stages" in message


def test_unreachable_hub_id_offline_says_so_and_points_to_local_folders(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as caught:
        load_processor(ModelConfig(name_or_path="florence-community/Florence-2-base"))
    first, *rest = str(caught.value).splitlines()
    assert "florence-community/Florence-2-base" in first and "connect" in first
    assert "local folder" in " ".join(rest)
