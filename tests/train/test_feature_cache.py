"""The image feature cache changes speed, never training: equal losses, hits from the second epoch,
off (with the reason logged) whenever cached features could differ from fresh ones."""

from __future__ import annotations

import pytest
import torch
from helpers import FROZEN, IMAGE_BYTES, tiny_module, tiny_recipe

from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.model.adapt import apply_adaptation
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.testing.tiny import build_tiny_model
from f2tune.train import feature_cache
from f2tune.train.module import Florence2Module
from f2tune.train.optim import build_optimizer
from f2tune.train.setup import assemble


def _batches(processor, count: int = 3, digest_images: bool = False) -> list[dict]:
    dataset = SampleDataset(shape_samples(4 * count, seed=3))
    collate = Florence2Collator(processor, 16, digest_images)
    return [collate([dataset[i] for i in range(4 * b, 4 * b + 4)]) for b in range(count)]


def test_cached_training_has_the_same_losses_and_hits_from_the_second_epoch(processor, tmp_path):
    """With drop-path in the DaViT, as Florence-2 has: the frozen tower runs without it either way."""
    cached = tiny_module(processor, tmp_path, drop_path_rate=0.5)
    plain = tiny_module(processor, tmp_path, drop_path_rate=0.5, cache_image_features="off")
    assert cached.feature_cache is not None and plain.feature_cache is None
    optimizers = [build_optimizer(m.model, m.recipe.optim, "32-true") for m in (cached, plain)]
    batches = _batches(processor)
    for epoch in range(2):
        for step, batch in enumerate(batches):
            losses = []
            for module, optimizer in zip((cached, plain), optimizers):
                torch.manual_seed(10 * epoch + step)  # the same dropout masks in both
                loss = module(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
            assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6)
        if epoch == 0:
            assert (cached.feature_cache.hits, cached.feature_cache.misses) == (0, 12)
    assert (cached.feature_cache.hits, cached.feature_cache.misses) == (12, 12)


def test_under_autocast_features_are_kept_in_its_dtype_and_both_runs_round_them_alike(processor, tmp_path):
    """CUDA's autocast runs LayerNorm in float32, so the projector's features come out float32
    there; the projector's closing norm is made to do the same here (on a CPU autocast returns
    bf16 already). The cache keeps them in bf16 (half the bytes), and the run without the cache
    rounds them the same way: equal losses."""
    modules = [tiny_module(processor, tmp_path), tiny_module(processor, tmp_path, cache_image_features="off")]
    for module in modules:
        norm = module.model.model.multi_modal_projector.image_proj_norm
        norm.forward = lambda hidden, norm=norm: torch.nn.LayerNorm.forward(norm, hidden.float())
    batch = _batches(processor, 1)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert modules[0].model.model.get_image_features(batch["pixel_values"]).pooler_output.dtype == torch.float32
        losses = []
        for module in modules:
            torch.manual_seed(0)  # the same dropout masks in both
            losses.append(module(batch).item())
    cache = modules[0].feature_cache
    assert {entry.dtype for entry in cache.store.values()} == {torch.bfloat16}
    assert cache.bytes == 4 * IMAGE_BYTES // 2
    assert losses[0] == losses[1]


def _losses_over_two_epochs(module: Florence2Module, batches: list[dict]) -> list[float]:
    optimizer = build_optimizer(module.model, module.recipe.optim, "32-true")
    losses = []
    for epoch in range(2):
        for step, batch in enumerate(batches):
            torch.manual_seed(10 * epoch + step)
            loss = module(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    return losses


def test_features_beyond_the_memory_budget_come_from_disk(processor, tmp_path, monkeypatch):
    """Memory for one image, disk for the rest: every image of the second epoch is served, and the
    losses are those of the run without the cache."""
    warnings = []
    monkeypatch.setattr(feature_cache, "warn", warnings.append)
    memory, disk = IMAGE_BYTES / 2**30, 20 * IMAGE_BYTES / 2**30
    cached = tiny_module(processor, tmp_path, image_feature_cache_gb=memory, image_feature_cache_disk_gb=disk)
    plain = tiny_module(processor, tmp_path, cache_image_features="off")
    batches = _batches(processor)
    assert _losses_over_two_epochs(cached, batches) == pytest.approx(_losses_over_two_epochs(plain, batches), rel=1e-5)
    cache = cached.feature_cache
    assert (cache.hits, cache.misses, len(cache.store), len(cache.spill.places)) == (12, 12, 1, 11)
    assert not warnings
    with torch.no_grad():
        next(cached.model.model.vision_tower.parameters()).add_(0.5)
    cached(batches[0])  # new frozen weights: memory and disk emptied, then refilled
    assert (cache.misses, len(cache.store), len(cache.spill.places)) == (16, 1, 3)
    assert cache.spill.folder == tmp_path / "run" / "feature_cache"
    scratch = tmp_path / "scratch"
    elsewhere = tiny_module(processor, tmp_path, image_feature_cache_disk_gb=disk, image_feature_cache_dir=str(scratch))
    assert elsewhere.feature_cache.spill.folder == scratch
    full = tiny_module(processor, tmp_path, image_feature_cache_gb=memory, image_feature_cache_disk_gb=memory)
    _losses_over_two_epochs(full, batches)
    assert full.feature_cache.hits == 2 and len(warnings) == 1  # one image in memory, one on disk
    assert "full at 0.00 GiB in memory and 0.00 GiB on disk" in warnings[0]


def test_samples_that_show_the_same_image_share_one_entry(processor, tmp_path):
    """Content-addressed: two sentences about one picture (another sample id, same pixels) are one
    entry, computed once even within a batch."""
    module = tiny_module(processor, tmp_path)
    batch = _batches(processor, 1, digest_images=True)[0]
    batch["pixel_values"][1] = batch["pixel_values"][0]
    batch["image_digests"][1] = batch["image_digests"][0]
    assert batch["ids"][0] != batch["ids"][1]
    module(batch)
    cache = module.feature_cache
    assert (cache.misses, cache.hits, len(cache.store)) == (3, 1, 3)


def test_changed_frozen_weights_or_pixels_are_not_served_from_the_cache(processor, tmp_path):
    module = tiny_module(processor, tmp_path)
    cache, batch = module.feature_cache, _batches(processor, 1)[0]
    module(batch)
    with torch.no_grad():  # as load_state_dict writes
        next(module.model.model.vision_tower.parameters()).add_(0.5)
    module(batch)
    assert cache.misses == 8 and len(cache.store) == 4
    next(module.model.model.vision_tower.parameters()).data.mul_(2.0)  # .data bumps no version counter
    module(batch)
    assert cache.misses == 12
    weight = next(module.model.model.vision_tower.parameters())
    weight.data = weight.data * 3  # new storage, version counter untouched
    module(batch)
    assert cache.misses == 16
    layer = next(m for m in module.model.model.multi_modal_projector.modules() if "weight" in m._parameters)
    layer.weight = torch.nn.Parameter(layer.weight.detach() + 1, requires_grad=False)  # another tensor
    module(batch)
    assert cache.misses == 20
    module({**batch, "pixel_values": batch["pixel_values"].flip(-1)})
    assert cache.misses == 24 and cache.hits == 0
    module(batch)
    assert cache.hits == 4  # nothing changed since: served from the cache


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        ({"adaptation": FROZEN, "data": {"augment": {"enabled": True, "hflip": 0.5}}}, "data.augment is enabled"),
        ({}, "vision tower or projector trains"),
        ({"adaptation": {"method": "lora"}, "lora": {"target": "vision"}}, "vision tower or projector trains"),
        ({"adaptation": FROZEN, "trainer": {"cache_image_features": "off"}}, "cache_image_features is off"),
    ],
)
def test_cache_is_off_with_the_reason_in_the_log(processor, tmp_path, monkeypatch, sections, reason):
    said: list[str] = []
    monkeypatch.setattr(feature_cache, "say", said.append)
    recipe = validate_recipe(tiny_recipe(tmp_path, eval={"metric": "none"}, **sections))
    model = apply_adaptation(build_tiny_model(processor), recipe.adaptation, recipe.lora)
    assert Florence2Module(model, processor, recipe).feature_cache is None
    assert len(said) == 1 and said[0].startswith("image feature cache off") and reason in said[0]


def test_lora_on_the_language_model_only_keeps_the_cache(processor, tmp_path):
    module = tiny_module(processor, tmp_path, adaptation={"method": "lora"})
    assert module.feature_cache is not None
    batch = _batches(processor, 1)[0]
    torch.manual_seed(0)
    expected = module.model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).loss
    torch.manual_seed(0)
    assert module(batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_collators_image_digests_key_the_cache(processor, tmp_path, monkeypatch):
    """The loader workers hash the images: the training step reads no pixels back to hash them."""
    module = tiny_module(processor, tmp_path)
    batch = _batches(processor, 1, digest_images=True)[0]
    module(batch)

    def no_hashing(pixels):
        raise AssertionError("pixels hashed in the training step")

    monkeypatch.setattr(feature_cache, "pixel_digest", no_hashing)
    module(batch)
    assert (module.feature_cache.hits, module.feature_cache.misses) == (4, 4)


def test_a_run_with_the_cache_has_its_loader_workers_hash_the_images(processor, tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation=FROZEN, eval={"metric": "none"}))
    _, module, datamodule = assemble(recipe, tmp_path / "run")
    assert module.feature_cache is not None and datamodule.digest_images
    assert len(next(iter(datamodule.train_dataloader()))["image_digests"]) == 4


@pytest.mark.parametrize(("adaptation", "tower_trains"), [(FROZEN, False), ({}, True)])
def test_only_a_frozen_tower_runs_in_eval_mode_and_is_left_in_train_mode(processor, tmp_path, adaptation, tower_trains):
    """Eval mode only inside the forward: Lightning warns about modules left in eval mode."""
    module = tiny_module(processor, tmp_path, adaptation=adaptation, drop_path_rate=0.5, cache_image_features="off")
    inner, seen = module.model.model, []
    for part in (inner.vision_tower, inner.multi_modal_projector):
        part.register_forward_pre_hook(lambda part, args: seen.append(part.training))
    module.train()
    module(_batches(processor, 1)[0])
    assert seen == [tower_trains, tower_trains]
    assert inner.vision_tower.training and inner.multi_modal_projector.training and inner.language_model.training
