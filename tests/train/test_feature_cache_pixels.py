"""Epochs after the feature cache holds every image: the loader workers send no pixels, training is
unchanged, and images the cache lacks after all are made into pixels in the training process."""

from __future__ import annotations

import pytest
import torch
from helpers import FROZEN, IMAGE_BYTES, PixelsSent, tiny_module, tiny_recipe

from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.shared_flag import SharedFlag
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.setup import assemble


def _batch_with_and_without_pixels(processor) -> tuple[dict, dict]:
    dataset = SampleDataset(shape_samples(4, seed=3))
    rows, flag = [dataset[i] for i in range(4)], SharedFlag()
    collate = Florence2Collator(processor, 16, digest_images=True, images_cached=flag)
    with_pixels = collate(rows)
    flag.set(True)
    return with_pixels, collate(rows)


def test_a_batch_without_pixels_is_served_from_the_cache_or_made_from_its_decoded_images(processor, tmp_path):
    module = tiny_module(processor, tmp_path)
    cache = module.feature_cache
    with_pixels, without = _batch_with_and_without_pixels(processor)
    made = module._pixels_of(without["decoded_images"], [2, 0])
    assert torch.equal(made, with_pixels["pixel_values"][[2, 0]])  # as the collator's processor makes them

    def loss(batch: dict) -> float:
        torch.manual_seed(0)  # the language model's dropout
        return module(batch).item()

    expected = loss(with_pixels)
    assert loss(without) == expected and (cache.hits, cache.misses) == (4, 4)
    cache.end_pass(whole=True)
    assert cache.complete
    with torch.no_grad():  # new frozen weights empty the cache: the decoded images are made into pixels
        next(module.model.model.vision_tower.parameters()).add_(0.5)
    from_decoded = loss(without)
    assert cache.misses == 8 and not cache.complete  # the workers are told to send pixels again
    cache.store.clear()
    assert loss(with_pixels) == from_decoded


def test_the_cache_is_complete_only_after_a_whole_pass_that_kept_every_image(processor, tmp_path):
    module = tiny_module(processor, tmp_path)
    cache, (batch, _) = module.feature_cache, _batch_with_and_without_pixels(processor)
    module(batch)
    cache.end_pass(whole=False)  # a resumed epoch, or a batch limit: other images may come next
    assert not cache.complete
    module(batch)
    cache.end_pass(whole=True)
    assert cache.complete
    with torch.no_grad():
        next(module.model.model.vision_tower.parameters()).add_(0.5)
    module(batch)  # emptied midway: the images before it are gone
    assert not cache.complete
    cache.end_pass(whole=True)
    assert not cache.complete
    module(batch)
    cache.end_pass(whole=True)
    assert cache.complete
    small = tiny_module(processor, tmp_path, image_feature_cache_gb=IMAGE_BYTES / 2**30)
    small(batch)
    small.feature_cache.end_pass(whole=True)  # three of the four images were refused
    assert not small.feature_cache.complete


def test_a_run_stops_sending_pixels_once_an_epoch_cached_every_image(processor, tmp_path):
    """One worker process, as in real runs; the second and third epochs are served from the cache
    without a single image made into pixels, in the workers or in the training process."""
    trainer = {"max_steps": -1, "max_epochs": 3, "val_check_interval": None, "check_val_every_n_epoch": 1}
    recipe = tiny_recipe(
        tmp_path, adaptation={"method": "lora"}, data={"num_workers": 1}, trainer=trainer, eval={"metric": "none"}
    )
    sent = PixelsSent()
    trainer, module, datamodule = assemble(validate_recipe(recipe), tmp_path / "run", [sent])
    trainer.fit(module, datamodule=datamodule)
    assert sent.batches == [(epoch, "cpu" if epoch == 0 else None) for epoch in range(3) for _ in range(4)]
    assert module.feature_cache.misses == 16 + 8  # the training images, then the validation ones: no more
    assert trainer.callback_metrics["train/image_cache_hit_rate"] == 1.0


@pytest.mark.parametrize("sources", [[None, None], [1.0, 1.0], [3.0, 1.0]])
def test_only_loaders_that_show_the_same_images_every_epoch_read_the_flag(processor, tmp_path, sources):
    """Sources mixed by weight draw other images each epoch: their workers always send pixels."""
    train = [{"format": "shapes", "num_samples": 8, "seed": i, "weight": w} for i, w in enumerate(sources)]
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation=FROZEN, data={"train": train}, eval={"metric": "none"}))
    _, module, datamodule = assemble(recipe, tmp_path / "run")
    assert datamodule.images_cached is module.feature_cache.complete
    weighted = sources != [None, None]
    expected = None if weighted else module.feature_cache.complete
    assert datamodule.train_dataloader().collate_fn.images_cached is expected
    assert datamodule.val_dataloader().collate_fn.images_cached is None
