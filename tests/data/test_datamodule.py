"""The datamodule: sources read once per process, empty data refused, mixtures follow their weights,
processes keep their training samples across epochs when the feature cache is on."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import lightning.fabric.utilities.data
import pytest

from f2tune.config import DataConfig, JsonlSource
from f2tune.data import datamodule as datamodule_module
from f2tune.data.datamodule import Florence2DataModule, auto_workers
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.data.shared_flag import SharedFlag
from f2tune.errors import DataError


def test_empty_dataset_is_an_error_even_when_skipping(write_jsonl):
    path = write_jsonl(["{broken", "also broken"])
    with pytest.raises(DataError, match=r"train.jsonl: the dataset is empty \(2 bad record\(s\) skipped\)"):
        read_source(JsonlSource(format="jsonl", path=str(path)), RecordProblems("skip"))
    blank = write_jsonl([], name="blank.jsonl")
    with pytest.raises(DataError, match="blank.jsonl: the dataset is empty"):
        read_source(JsonlSource(format="jsonl", path=str(blank)), RecordProblems())


def small_share(processor, weights: tuple[float | None, float | None], epochs: int = 4) -> float:
    """The share of a 10-sample source mixed with a 90-sample one over `epochs` training epochs."""
    train = [
        {"format": "shapes", "num_samples": 10, "seed": 1, "name": "small", "weight": weights[0]},
        {"format": "shapes", "num_samples": 90, "seed": 2, "name": "large", "weight": weights[1]},
    ]
    datamodule = Florence2DataModule(DataConfig(train=train, batch_size=50, num_workers=0), processor, seed=0)
    datamodule.setup("fit")
    counts = Counter()
    loader = datamodule.train_dataloader()
    for _ in range(epochs):
        for batch in loader:
            counts.update(i.split("-")[0] for i in batch["ids"])
    return counts["small"] / sum(counts.values())


def test_mixture_follows_source_weights(processor):
    assert 0.65 < small_share(processor, (3.0, 1.0)) < 0.85  # weight 3:1 -> 75% from the 10-sample source
    assert 0.40 < small_share(processor, (1.0, 1.0)) < 0.60  # given equal weights are equal shares
    assert 0.65 < small_share(processor, (3.0, None)) < 0.85  # an unset weight counts 1


def test_without_weights_every_sample_comes_once_per_epoch(processor):
    assert small_share(processor, (None, None), epochs=1) == 0.1
    config = DataConfig(train=[{"format": "shapes", "num_samples": 12, "weight": 5.0}], batch_size=5, num_workers=0)
    datamodule = Florence2DataModule(config, processor)
    datamodule.setup("fit")
    ids = [i for batch in datamodule.train_dataloader() for i in batch["ids"]]
    assert sorted(ids) == sorted(f"shapes-0-{k}" for k in range(12))  # one source: its weight changes nothing


@pytest.mark.parametrize(
    ("digest_images", "world_size", "group_by_length", "stable"),
    [(True, 2, False, True), (True, 2, True, True), (False, 2, False, False), (True, 1, False, False)],
)
def test_processes_keep_their_samples_only_for_the_feature_cache(
    processor, digest_images, world_size, group_by_length, stable
):
    """Stable shares where a process's cache can serve its later epochs: cache on, several processes."""
    config = DataConfig(
        train=[{"format": "shapes", "num_samples": 12}], batch_size=2, num_workers=0, group_by_length=group_by_length
    )
    datamodule = Florence2DataModule(config, processor)
    datamodule.setup("fit")
    datamodule.images_cached = SharedFlag() if digest_images else None
    datamodule.trainer = SimpleNamespace(world_size=world_size, global_rank=0)
    sampler = datamodule.train_dataloader().sampler.inner
    assert (getattr(sampler, "share", None) is not None) == stable
    epochs = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        epochs.append(set(sampler))
    assert (epochs[0] == epochs[1]) == (stable or world_size == 1)  # one process: every sample, every epoch


@pytest.mark.parametrize(("cpus", "devices", "workers"), [(16, 1, 8), (16, 4, 3), (16, 16, 1), (2, 1, 1)])
def test_auto_workers_share_the_cpus_among_the_processes_and_stop_at_eight(monkeypatch, cpus, devices, workers):
    monkeypatch.setattr(lightning.fabric.utilities.data, "_num_cpus_available", lambda: cpus)
    assert auto_workers(devices) == workers


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # torch counts this machine's real CPUs
def test_auto_workers_are_decided_once_for_every_loader_of_the_run(processor, monkeypatch):
    monkeypatch.setattr(lightning.fabric.utilities.data, "_num_cpus_available", lambda: 16)
    shapes = [{"format": "shapes", "num_samples": 4}]
    datamodule = Florence2DataModule(DataConfig(train=shapes, val=shapes, batch_size=2), processor)
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(world_size=2, global_rank=0, num_devices=2)
    said = []
    monkeypatch.setattr(datamodule_module, "say", said.append)
    assert datamodule.train_dataloader().num_workers == datamodule.val_dataloader().num_workers == 7
    assert said == ["data.num_workers: auto -> 7 loader worker process(es) per loader"]
    pinned = Florence2DataModule(DataConfig(train=shapes, batch_size=2, num_workers=0), processor)
    pinned.setup("fit")
    assert pinned.train_dataloader().num_workers == 0


def test_each_source_is_logged_with_the_tasks_it_trains(processor, write_jsonl, monkeypatch):
    """Two sources over one dataset carry one name; their tasks tell them apart in the log."""
    path = write_jsonl(
        [
            {"image": "images/shapes-5-0.png", "prompt": "<CAPTION>", "target": "a red circle"},
            {"image": "images/shapes-5-0.png", "prompt": "What colour?", "target": "red"},
            {"image": "images/shapes-5-0.png", "prompt": "<CAPTION>", "target": "a red square"},
        ]
    )
    said = []
    monkeypatch.setattr(datamodule_module, "say", said.append)
    Florence2DataModule(DataConfig(train=[{"format": "jsonl", "path": str(path)}]), processor).setup("fit")
    assert said == [f"train source '{path.stem}': 3 samples (<CAPTION> 2, free text 1)"]


def test_text_samples_augmentation_cannot_move_are_counted_in_the_log(processor, write_jsonl, monkeypatch):
    path = write_jsonl(
        [
            {"image": "images/shapes-5-0.png", "prompt": "<CAPTION>", "target": "a red circle"},
            {"image": "images/shapes-5-0.png", "prompt": "<OD>", "target": "circle<loc_1><loc_2><loc_50><loc_60>"},
        ]
    )
    said = []
    monkeypatch.setattr(datamodule_module, "say", said.append)
    config = DataConfig(train=[{"format": "jsonl", "path": str(path)}], augment={"enabled": True, "hflip": 0.5})
    Florence2DataModule(config, processor).setup("fit")
    assert said[1].startswith(f"train source '{path.stem}': 1 samples hold <loc_N> tokens in their text")
