"""Length-grouped batches: less padding than random batches, each sample once per epoch, same
number of batches on every process."""

from __future__ import annotations

import random

from helpers import tiny_recipe

from f2tune.data.datamodule import Florence2DataModule
from f2tune.data.sample import Sample
from f2tune.data.sampler import LengthGroupedSampler, target_lengths
from f2tune.recipe import validate_recipe


def _lengths(count: int = 203) -> list[int]:
    rng = random.Random(0)
    return [rng.choice([rng.randint(3, 12), rng.randint(20, 250)]) for _ in range(count)]


def _padding(order: list[int], lengths: list[int], batch_size: int) -> int:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_grouped_batches_pad_less_and_hold_every_sample_once():
    lengths = _lengths()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    shuffled = random.Random(1).sample(range(len(lengths)), len(lengths))
    assert _padding(order, lengths, 8) < _padding(shuffled, lengths, 8) / 3
    sampler.set_epoch(1)
    again = list(sampler)
    assert again != order and sorted(again) == list(range(len(lengths)))


def test_processes_share_an_epoch_evenly():
    lengths = _lengths()
    ranks = [list(LengthGroupedSampler(lengths, batch_size=4, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 102  # 203 padded to 204
    assert set(ranks[0]) | set(ranks[1]) == set(range(len(lengths)))
    assert len(ranks[0] + ranks[1]) == 204


def test_target_lengths_count_structured_targets_without_images(processor):
    box = Sample(
        "a", "x.png", "", "", "t", task="<OD>", reference={"boxes": [[1, 2, 30, 40]] * 3, "labels": ["cat"] * 3}
    )
    caption = Sample("b", "x.png", "<CAPTION>", "a red circle", "t", task="<CAPTION>")
    lengths = target_lengths([box, caption], processor.tokenizer, limit=256)
    assert lengths[0] > 3 * 4 and lengths[1] < 10
    assert target_lengths([box], processor.tokenizer, limit=5) == [5]


def test_datamodule_groups_by_length_on_request(processor, tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, data={"group_by_length": True}))
    datamodule = Florence2DataModule(recipe.data, processor)
    datamodule.setup("fit")
    assert isinstance(datamodule.train_dataloader().sampler.inner, LengthGroupedSampler)
