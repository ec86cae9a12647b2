"""`model.adapter`: start from a shared peft adapter to train further, validate, test or predict."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_recipe
from safetensors.torch import load_file

from f2tune.errors import RecipeError
from f2tune.predict.run import PredictRequest, predict
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.evaluate import evaluate
from f2tune.train.run import fit


class FirstStep(pl.Callback):
    """Trainable weights as training starts, and the LoRA weights at the end."""

    def on_train_start(self, trainer, pl_module):
        self.trainable = {n: p.detach().clone() for n, p in pl_module.model.named_parameters() if p.requires_grad}

    def on_train_end(self, trainer, pl_module):
        self.final = {n: p.detach().clone() for n, p in pl_module.model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """An adapter exported by a LoRA run, as someone would share it, and that run's result."""
    tmp_path = tmp_path_factory.mktemp("shared")
    raw = tiny_recipe(tmp_path, adaptation={"method": "lora"}, lora={"r": 4, "target": "all"}, trainer={"max_steps": 2})
    raw["eval"].update(before_fit=False, metric="none")
    result = fit(validate_recipe(raw))
    return result.run_dir / "export", result


def adapter_recipe(tmp_path, adapter, **sections) -> dict:
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 2, "run_name": "continued"}, **sections)
    raw["eval"].update(before_fit=False, metric="none")
    raw["model"] = {"adapter": str(adapter)}  # no name_or_path: the base comes from adapter_config.json
    return raw


def test_continued_training_starts_from_the_adapter_and_trains_its_lora_weights(shared, tmp_path):
    adapter, _ = shared
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    watch = FirstStep()
    result = fit(
        validate_recipe(adapter_recipe(tmp_path, adapter, adaptation={"method": "lora"})), extra_callbacks=[watch]
    )
    assert watch.trainable and all("lora_" in name for name in watch.trainable)
    assert len(watch.trainable) == len(saved)
    for key, value in saved.items():  # peft names saved weights without the adapter name
        name = key.replace(".weight", ".default.weight")
        assert torch.equal(watch.trainable[name], value), name
    assert any(not torch.equal(watch.final[n], watch.trainable[n]) for n in watch.trainable), "nothing trained"
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    exported = json.loads((result.run_dir / "export" / "adapter_config.json").read_text())
    assert exported["base_model_name_or_path"] == base


def test_full_recipe_merges_the_adapter_and_trains_every_weight(shared, tmp_path):
    adapter, _ = shared
    watch = FirstStep()
    fit(validate_recipe(adapter_recipe(tmp_path, adapter)), extra_callbacks=[watch])
    assert not any("lora_" in n for n in watch.trainable)
    assert {"model.language_model.shared.weight", "model.vision_tower.convs.0.conv.weight"} <= set(watch.trainable)


def test_validation_of_the_adapter_gives_the_runs_final_loss(shared, tmp_path):
    adapter, result = shared
    metrics = evaluate(validate_recipe(adapter_recipe(tmp_path, adapter)), "validate", checkpoint="none")
    assert metrics["val/loss"] == pytest.approx(result.metrics_after["val/loss"], abs=1e-5)


def test_predict_with_an_adapter_folder(shared, tmp_path):
    adapter, _ = shared
    image = tmp_path / "shape.png"
    shape_samples(1)[0].image.render().save(image)
    out = predict(str(adapter), [image], PredictRequest(task="<CAPTION>"), tmp_path / "preds")
    record = json.loads((out / "predictions.jsonl").read_text())
    assert record["task"] == "<CAPTION>" and isinstance(record["text"], str)


def test_a_recipe_needs_a_base_or_an_adapter(tmp_path):
    raw = tiny_recipe(tmp_path)
    raw["model"] = {"dtype": "float32"}
    with pytest.raises(RecipeError, match=r"set model\.name_or_path .* or model\.adapter"):
        validate_recipe(raw)
