"""End-to-end fit on the tiny model: run folder, exports loadable by plain transformers/peft, resume."""

from __future__ import annotations

import csv
import json
import re

import lightning.pytorch as pl
import pytest
import torch
import yaml
from helpers import tiny_recipe
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

from f2tune.data.collate import Florence2Collator
from f2tune.errors import RecipeError, RunError
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.export.atomic import OUTPUT_MARKER
from f2tune.log import setup_logging
from f2tune.model.adapt import florence2
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.locate import run_checkpoint
from f2tune.train.run import fit

FULL_EXPORT_FILES = {
    OUTPUT_MARKER,
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
ADAPTER_EXPORT_FILES = {"README.md", "adapter_config.json", "adapter_model.safetensors", OUTPUT_MARKER}


def batch_for(processor) -> dict:
    samples = shape_samples(3, seed=9)
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in samples]
    return Florence2Collator(processor, 16)(items)


def logits(model, batch: dict) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).logits


class KeepModule(pl.Callback):
    """Holds on to the trained LightningModule so a test can compare it with the export."""

    def on_train_end(self, trainer, pl_module):
        self.module = pl_module


class RecordTrainMode(pl.Callback):
    """Train mode of the model at every training batch, and of its vision tower as it runs in them."""

    def __init__(self) -> None:
        self.modes: list[bool] = []
        self.tower_modes: list[bool] = []

    def on_train_start(self, trainer, pl_module):
        def record(tower, args):
            if trainer.training:  # not in validation
                self.tower_modes.append(tower.training)

        florence2(pl_module.model).model.vision_tower.register_forward_pre_hook(record)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.modes.append(pl_module.model.training)


def test_full_fit_writes_run_folder_and_a_loadable_model(tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path))
    modes = RecordTrainMode()
    result = fit(recipe, extra_callbacks=[modes])
    assert modes.modes and all(modes.modes), "the model must be in train mode (dropout on) while training"
    run = result.run_dir
    assert yaml.safe_load((run / "config.yaml").read_text()) == recipe.model_dump(mode="json")
    assert (run / "checkpoints" / "last.ckpt").is_file() and result.best_checkpoint
    rows = list(csv.DictReader((run / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    assert [float(r["train/samples_per_s"]) > 0 for r in rows if r.get("train/samples_per_s")] == [True] * 3
    assert list((run / "logs" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    assert result.loss_curve == run / "loss_curve.png" and result.loss_curve.is_file()
    assert {"val/loss", "val/CAPTION/exact_match"} <= set(result.metrics_before) and set(result.metrics_after) >= {
        "val/loss"
    }
    assert result.metrics_after["val/loss"] < result.metrics_before["val/loss"]

    export = run / "export"
    assert {p.name for p in export.iterdir()} == FULL_EXPORT_FILES
    loaded = AutoModelForImageTextToText.from_pretrained(export)
    processor = AutoProcessor.from_pretrained(export)
    batch = batch_for(processor)
    card = (export / "README.md").read_text()
    assert "library_name: transformers" in card and "pipeline_tag: image-text-to-text" in card and "<CAPTION>" in card
    assert torch.isfinite(logits(loaded, batch)).all()


def test_lora_adapter_export_loads_with_plain_peft_and_gives_the_trained_outputs(tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, lora={"r": 4, "target": "all"}))
    keep = KeepModule()
    result = fit(recipe, extra_callbacks=[keep])
    export = result.run_dir / "export"
    assert {p.name for p in export.iterdir()} == ADAPTER_EXPORT_FILES
    config = json.loads((export / "adapter_config.json").read_text())
    base = AutoModelForImageTextToText.from_pretrained(config["base_model_name_or_path"])
    loaded = PeftModel.from_pretrained(base, export)
    batch = batch_for(keep.module.processor)
    assert torch.allclose(logits(loaded, batch), logits(keep.module.model, batch), atol=1e-5)
    card = (export / "README.md").read_text()
    assert "library_name: peft" in card and "PeftModel.from_pretrained" in card


def test_lora_merge_exports_a_plain_model_with_the_trained_outputs(tmp_path, recwarn):
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, lora={"r": 4, "merge": True}))
    keep, modes = KeepModule(), RecordTrainMode()
    result = fit(recipe, extra_callbacks=[keep, modes])
    assert len(modes.modes) == 4 and all(modes.modes), "the language model trains in train mode"
    assert modes.tower_modes == [False] * 4, "the frozen vision tower runs in eval mode, after validation too"
    assert not [w for w in recwarn if "eval mode" in str(w.message)], "and is not left in it (Lightning warns)"
    export = result.run_dir / "export"
    assert {p.name for p in export.iterdir()} == FULL_EXPORT_FILES
    loaded = AutoModelForImageTextToText.from_pretrained(export)
    batch = batch_for(keep.module.processor)
    assert torch.allclose(logits(loaded, batch), logits(keep.module.model, batch), atol=1e-5)


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False}))
    with pytest.raises(RunError, match="no checkpoint"):
        fit(recipe, resume=True)
    fit(recipe)
    with pytest.raises(RunError, match="--resume"):
        fit(recipe)


def test_an_export_dir_holding_other_files_stops_the_run_before_training(tmp_path):
    """`export.dir` is replaced at the end of fit: a folder of other files is refused at the start,
    not deleted at the end (nor found unreplaceable after the training)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "florence-2-base.safetensors").write_text("weights")
    recipe = validate_recipe(tiny_recipe(tmp_path, export={"dir": str(models)}))
    with pytest.raises(RunError, match="models exists and holds files f2tune did not write"):
        fit(recipe)
    assert [p.name for p in models.iterdir()] == ["florence-2-base.safetensors"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("folder", "said"),
    [
        ("runs/t", "is the run folder: "),
        ("runs", "is a folder above the run folder .*runs/t: "),
        ("runs/t/checkpoints", "is the run folder's checkpoints: .* would delete the run's checkpoints"),
        ("runs/t/logs/csv", "is inside the run folder's logs: "),
    ],
)
def test_an_export_dir_over_the_run_folder_stops_the_run_before_training(tmp_path, folder, said):
    """The export replaces its folder whole: over the run's own folders it passed the check before
    training (the run folder was new) and was refused after the whole fit, with no export or summary."""
    recipe = validate_recipe(tiny_recipe(tmp_path, export={"dir": str(tmp_path / folder)}))
    with pytest.raises(RecipeError, match=f"^export.dir {tmp_path / folder} {said}.*leave export.dir unset"):
        fit(recipe)
    assert not (tmp_path / "runs").exists()


def test_an_export_dir_of_its_own_inside_the_run_folder_is_written(tmp_path):
    sections = {"trainer": {"max_steps": 1}, "eval": {"before_fit": False, "metric": "none"}}
    result = fit(validate_recipe(tiny_recipe(tmp_path, export={"dir": str(tmp_path / "runs/t/final")}, **sections)))
    assert result.export_dir == tmp_path / "runs/t/final" and (result.export_dir / "model.safetensors").is_file()


def test_a_run_folder_that_cannot_be_made_stops_the_run_at_once(tmp_path):
    (tmp_path / "runs").write_text("a file where the runs should go")
    with pytest.raises(RunError, match=r"runs/t, the run folder \(trainer.output_dir / trainer.run_name\), cannot"):
        fit(validate_recipe(tiny_recipe(tmp_path)))


def test_a_feature_cache_folder_that_cannot_be_made_stops_the_run_at_once(tmp_path):
    """It was a FileExistsError once the cache first spilled to disk, mid-training."""
    (tmp_path / "afile").write_text("not a folder")
    trainer = {"image_feature_cache_dir": str(tmp_path / "afile"), "image_feature_cache_disk_gb": 1}
    with pytest.raises(RunError, match=r"afile, trainer.image_feature_cache_dir, cannot be made: .* is a file"):
        fit(validate_recipe(tiny_recipe(tmp_path, trainer=trainer)))


def test_a_recipe_refused_after_reading_the_data_leaves_no_run_folder(tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"monitor": "val/OD/map"}))  # shapes are <CAPTION>
    with pytest.raises(RecipeError, match="does not log 'val/OD/map'"):
        fit(recipe)
    assert not (tmp_path / "runs").exists()


def test_a_validation_interval_longer_than_an_epoch_names_the_recipe_keys(tmp_path):
    trainer = {"val_check_interval": 5, "check_val_every_n_epoch": 1}  # 16 samples, batch 4: 4 batches
    with pytest.raises(RecipeError, match="trainer.val_check_interval is 5 training batches, but an epoch has 4: "):
        fit(validate_recipe(tiny_recipe(tmp_path, trainer=trainer, eval={"before_fit": False})))
    assert not (tmp_path / "runs" / "t").exists()  # found once Lightning asked for the loader: no folder left


class CountValidations(pl.Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_start(self, trainer, pl_module):
        self.steps.append(trainer.global_step)


@pytest.mark.parametrize(("max_steps", "validated_at"), [(4, [2, 4]), (3, [2, 3])])
def test_the_final_weights_are_validated_once(tmp_path, max_steps, validated_at):
    """Training that ended with a full validation (loss and task metrics) reports that one; one
    that ended between validations gets a closing validation of its final weights."""
    counted = CountValidations()
    trainer = {"max_steps": max_steps}
    result = fit(
        validate_recipe(tiny_recipe(tmp_path, trainer=trainer, eval={"before_fit": False})), extra_callbacks=[counted]
    )
    assert counted.steps == validated_at
    assert {"val/loss", "val/CAPTION/exact_match"} <= set(result.metrics_after)


def test_last_checkpoint_follows_every_validation_even_without_improvement(tmp_path):
    """Exact match stays 0 on the tiny model: the best checkpoint is the first validation's, and
    last.ckpt (what --resume reads) must still hold step 4, once (Lightning 2.6's `save_last` kept
    it at step 2; a second writer, every 3 steps, made a `last-v1.ckpt`)."""
    trainer = {"monitor": "val/CAPTION/exact_match", "checkpoint_every_n_steps": 3}
    result = fit(validate_recipe(tiny_recipe(tmp_path, trainer=trainer, eval={"before_fit": False})))
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["best-step=2.ckpt", "last.ckpt"]
    assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 4


def test_the_best_of_epoch_end_validations_is_recorded_in_last_checkpoint(tmp_path):
    """Validating at each epoch's end (the recipes' default), Lightning saved the best checkpoint at
    the epoch's end, after last.ckpt: last.ckpt named the best of the validation before, so a resumed
    run lost its best checkpoint, and `--checkpoint best` chose an older one."""
    trainer = {"max_steps": -1, "max_epochs": 1, "val_check_interval": None, "check_val_every_n_epoch": 1}
    result = fit(validate_recipe(tiny_recipe(tmp_path, trainer=trainer, eval={"before_fit": False})))
    assert run_checkpoint(result.run_dir, "best").name == "best-step=4.ckpt"


def test_resume_with_nothing_left_to_train_is_refused(tmp_path):
    """It trained nothing, exported again and exited 0."""
    sections = {"trainer": {"max_steps": 2}, "eval": {"before_fit": False}}
    fit(validate_recipe(tiny_recipe(tmp_path, **sections)))
    with pytest.raises(RunError, match=r"--resume: the run is at step 2 \(.*last.ckpt\) and trainer.max_steps is 2"):
        fit(validate_recipe(tiny_recipe(tmp_path, **sections)), resume=True)


def test_resume_of_an_epoch_limited_run_at_its_last_epoch_is_refused(tmp_path):
    """Lightning restored the run at its last epoch's end, trained nothing, and fit exported again and
    exited 0; one more epoch trains the next 4 steps."""

    def sections(epochs: int) -> dict:
        trainer = {"max_steps": -1, "max_epochs": epochs, "val_check_interval": None, "check_val_every_n_epoch": 1}
        return {"trainer": trainer, "eval": {"before_fit": False}}

    fit(validate_recipe(tiny_recipe(tmp_path, **sections(1))))
    refusal = r"--resume: the run has finished 1 epoch\(s\) \(.*last.ckpt\) and trainer.max_epochs is 1"
    with pytest.raises(RunError, match=refusal):
        fit(validate_recipe(tiny_recipe(tmp_path, **sections(1))), resume=True)
    result = fit(validate_recipe(tiny_recipe(tmp_path, **sections(2))), resume=True)
    assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 8


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_continues_from_the_last_step(tmp_path, method, recwarn, capsys):
    setup_logging()
    adaptation = {"method": method}
    first = validate_recipe(
        tiny_recipe(tmp_path, adaptation=adaptation, trainer={"max_steps": 2}, eval={"before_fit": False})
    )
    result = fit(first)
    state = torch.load(result.last_checkpoint, weights_only=False)["state_dict"]
    if method == "lora":  # LoRA checkpoints carry the adapter only; the base comes from model.name_or_path
        assert state and all("lora_" in key for key in state)
    longer = validate_recipe(
        tiny_recipe(tmp_path, adaptation=adaptation, trainer={"max_steps": 4}, eval={"before_fit": False})
    )
    steps, weights_at_restart = [], {}

    class Steps(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not steps:
                weights_at_restart.update({k: v.clone() for k, v in pl_module.state_dict().items() if k in state})
            steps.append(trainer.global_step)

    recwarn.clear()
    result = fit(longer, resume=True, extra_callbacks=[Steps()])
    assert steps == [2, 3]
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)], "the run's own checkpoints"
    assert weights_at_restart.keys() == state.keys()
    assert all(torch.equal(weights_at_restart[k], state[k]) for k in state), (
        "resumed weights differ from the checkpoint"
    )
    assert (result.run_dir / "logs" / "csv" / "version_0" / "metrics.csv").is_file()
    assert (result.run_dir / "logs" / "csv" / "version_1" / "metrics.csv").is_file()
    saved = {p.name: yaml.safe_load(p.read_text())["trainer"]["max_steps"] for p in result.run_dir.glob("config*")}
    assert saved == {"config.until-step2.yaml": 2, "config.yaml": 4}  # each part's recipe
    assert "--resume: changed since step 2: trainer.max_steps 2 -> 4;" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"lora": {"r": 8}}, "lora.r was 16, is now 8"),
        ({"adaptation": {"freeze": {"projector": True}}}, "adaptation.freeze.projector was False, is now True"),
    ],
)
def test_resume_refuses_changes_the_checkpoint_cannot_load_into(tmp_path, change, said):
    sections = {"adaptation": {"method": "lora"}, "trainer": {"max_steps": 2}, "eval": {"before_fit": False}}
    result = fit(validate_recipe(tiny_recipe(tmp_path, **sections)))
    before = sorted(p.name for p in result.run_dir.rglob("*"))
    recipe_before = (result.run_dir / "config.yaml").read_text()
    changed = tiny_recipe(tmp_path, **sections)
    for key, value in change.items():
        changed[key] = {**changed.get(key, {}), **value}
    with pytest.raises(RunError, match=re.escape(f"--resume: {said}. A resumed run keeps the model, its adaptation")):
        fit(validate_recipe(changed), resume=True)
    assert sorted(p.name for p in result.run_dir.rglob("*")) == before
    assert (result.run_dir / "config.yaml").read_text() == recipe_before


def test_a_resumed_run_trains_with_its_own_optimizer_settings(tmp_path):
    """The checkpoint's optimizer state holds the first part's lr and weight decay; the resumed part
    uses the recipe's (here a constant schedule: the lr is the recipe's value itself)."""
    sections = {"trainer": {"max_steps": 2}, "eval": {"before_fit": False}, "optim": {"schedule": "constant"}}
    fit(validate_recipe(tiny_recipe(tmp_path, **sections)))
    changed = tiny_recipe(tmp_path, **sections)
    changed["trainer"]["max_steps"] = 3
    changed["optim"] |= {"lr": 2e-4, "lr_scale": {"vision_tower": 0.5}, "weight_decay": 0.2}
    seen = {}

    class Settings(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.update({g["name"]: (g["lr"], g["weight_decay"]) for g in trainer.optimizers[0].param_groups})

    fit(validate_recipe(changed), resume=True, extra_callbacks=[Settings()])
    assert seen["vision_tower"] == (pytest.approx(1e-4), 0.2)
    assert seen["language_model"] == (pytest.approx(2e-4), 0.2)
    assert seen["language_model-no_decay"] == (pytest.approx(2e-4), 0.0)


def test_truncated_targets_are_counted_in_the_logs(tmp_path):
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False, "metric": "none"})
    raw["data"]["max_target_tokens"] = 3
    result = fit(validate_recipe(raw))
    rows = list(csv.DictReader((result.run_dir / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    counted = [float(r["data/truncated_targets"]) for r in rows if r.get("data/truncated_targets")]
    assert counted and counted[-1] > 0


def test_structured_detection_data_trains_and_is_scored_with_coco_map(tmp_path):
    """COCO file -> augmentation -> <loc_N> targets -> training -> generation -> parsed boxes -> mAP."""
    images = tmp_path / "images"
    images.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]}
    for index, sample in enumerate(shape_samples(8, seed=12)):
        sample.image.render().save(images / f"{index}.png")
        x1, y1, x2, y2 = sample.image.box
        category = 1 if sample.image.shape == "circle" else 2
        coco["images"].append({"id": index, "file_name": f"{index}.png", "width": 96, "height": 96})
        bbox = [x1, y1, x2 - x1, y2 - y1]
        coco["annotations"].append(
            {"id": index, "image_id": index, "category_id": category, "bbox": bbox, "iscrowd": 0}
        )
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    source = {"format": "coco_detection", "path": str(tmp_path / "coco.json"), "image_root": str(images)}
    raw = tiny_recipe(
        tmp_path, eval={"before_fit": False, "metric": "auto", "max_new_tokens": 12}, trainer={"max_steps": 3}
    )
    raw["data"].update(train=[source], val=[source], max_target_tokens=32)
    raw["data"]["augment"] = {"enabled": True, "hflip": 0.5}
    result = fit(validate_recipe(raw))
    assert "val/OD/map" in result.metrics_after
    (folder,) = (result.run_dir / "predictions").glob("val-step000003")
    records = [json.loads(line) for line in (folder / "rank0.jsonl").read_text().splitlines()]
    assert records and all(r["task"] == "<OD>" and r["reference"]["labels"] for r in records)
    assert all(r["target"].startswith(("circle<loc_", "square<loc_")) for r in records)
