"""Assembling a run: the recipe's settings that will not apply are said once, by the command the
user ran (not by every rebuild of a checkpoint's model, nor for a saved recipe, which lists every key)."""

from __future__ import annotations

from helpers import tiny_recipe

from f2tune.log import setup_logging
from f2tune.recipe import validate_recipe
from f2tune.train.setup import assemble, build_trainable_model


def test_lora_settings_on_a_full_run_are_said_to_be_ignored(tmp_path, capsys):
    setup_logging()  # f2tune's lines on stderr, as the command line has them
    recipe = validate_recipe(tiny_recipe(tmp_path, lora={"r": 4}))
    assemble(recipe, tmp_path / "run")
    assert capsys.readouterr().err.count("the LoRA settings are ignored") == 1


def test_a_saved_recipe_rebuilds_its_model_without_that_warning(tmp_path, capsys):
    setup_logging()
    saved = validate_recipe(validate_recipe(tiny_recipe(tmp_path)).model_dump(mode="json"))
    assert "lora" in saved.model_fields_set
    build_trainable_model(saved)
    assert "ignored" not in capsys.readouterr().err


def test_a_run_from_a_saved_recipe_hears_of_no_ignored_settings(tmp_path, capsys):
    """A full run's config.yaml lists `lora:` and every augment key: started from it, the run was
    told its LoRA settings were ignored."""
    setup_logging()
    saved = validate_recipe(validate_recipe(tiny_recipe(tmp_path)).model_dump(mode="json"))
    assemble(saved, tmp_path / "run")
    assert "ignored" not in capsys.readouterr().err


def test_augment_settings_that_change_nothing_are_said(tmp_path, capsys):
    """Knobs without `enabled: true` trained on unaugmented images without a word; `enabled: true`
    without a knob augmented nothing and turned the feature cache off."""
    setup_logging()
    lora = {"method": "lora"}
    knobs = validate_recipe(tiny_recipe(tmp_path, adaptation=lora, data={"augment": {"hflip": 0.5, "hue": 0.1}}))
    assemble(knobs, tmp_path / "run")
    err = capsys.readouterr().err
    assert "data.augment sets hflip, hue but data.augment.enabled is false: training images are not augmented" in err
    enabled = validate_recipe(tiny_recipe(tmp_path, adaptation=lora, data={"augment": {"enabled": True}}))
    _, module, _ = assemble(enabled, tmp_path / "run")
    assert "data.augment.enabled is true but sets no transform" in capsys.readouterr().err
    assert module.feature_cache is not None


def test_a_task_monitor_without_validation_data_is_said(tmp_path, capsys):
    setup_logging()
    recipe = tiny_recipe(tmp_path, trainer={"monitor": "val/CAPTION/exact_match"})
    recipe["data"]["val"] = []
    assemble(validate_recipe(recipe), tmp_path / "run")
    assert "trainer.monitor is 'val/CAPTION/exact_match' but data.val is empty" in capsys.readouterr().err


def test_only_a_fit_caches_image_features(tmp_path, capsys):
    """validate and test see each image once: no cache, no word about one, no image digests."""
    setup_logging()
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}))
    _, module, datamodule = assemble(recipe, tmp_path / "run")
    assert module.feature_cache is not None and datamodule.digest_images
    assert "image feature cache on" in capsys.readouterr().err
    for stage in ("validate", "test"):
        _, module, datamodule = assemble(recipe, tmp_path / "run", stage=stage)
        assert module.feature_cache is None and not datamodule.digest_images
        assert "image feature cache" not in capsys.readouterr().err
