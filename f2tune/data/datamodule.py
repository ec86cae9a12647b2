"""Lightning datamodule: reads every source of the recipe, mixes training sources by weight."""

from __future__ import annotations

from collections import Counter

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, Sampler
from transformers import Florence2Processor

from f2tune.config import DataConfig, DataSource
from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.evaluation_shares import EvaluationSampler, PaddedDataset
from f2tune.data.formats import read_source, source_name
from f2tune.data.problems import RecordProblems
from f2tune.data.resume import ResumableLoader, ResumableSampler, WeightedEpochSampler
from f2tune.data.sample import Sample
from f2tune.data.sampler import LengthGroupedSampler, StableShareSampler, target_lengths
from f2tune.data.shared_flag import SharedFlag
from f2tune.data.transforms import Augmentation, build_augmentation, moves_with_pixels
from f2tune.data.worker_start import WorkerStart
from f2tune.errors import RecipeError
from f2tune.log import say, warn

STAGE_SPLITS = {"fit": ("train", "val", "test"), "validate": ("val",), "test": ("test",), "predict": ()}
"""The data splits each Lightning stage reads."""


class Florence2DataModule(pl.LightningDataModule):
    """Datasets and loaders for one recipe. Every process reads the (small) record lists itself;
    images are opened lazily by the loader workers.

    The processor may be attached after `setup`, so that bad records are reported before anything
    is downloaded or loaded; `images_cached` is given once the model shows that its image features
    are cached: the cache's word that it holds every training image (the training workers then send
    no pixels), and until then the loader workers hash each image for the cache (`digest_images`).
    """

    def __init__(self, config: DataConfig, processor: Florence2Processor | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.processor = processor
        self.seed = seed
        self.images_cached: SharedFlag | None = None
        self.auto_workers: int | None = None
        self.max_input_tokens: int | None = None
        """The model's encoder positions, once the model is known: longer inputs are bad records."""
        self.train_parts: list[SampleDataset] = []
        self.val_parts: list[SampleDataset] = []
        self.test_parts: list[SampleDataset] = []
        self._splits_read: set[str] = set()

    def setup(self, stage: str | None = None) -> None:
        """Read the sources of the splits `stage` uses (Lightning calls this again for its own
        stage). A fit reads all three, so that every split's bad records show before training;
        `validate` and `test` read only their own, so that a checkpoint can be evaluated where its
        training data is not."""
        self.read_splits(STAGE_SPLITS.get(stage or "fit", STAGE_SPLITS["fit"]))

    def read_splits(self, splits: tuple[str, ...]) -> None:
        """Read the sources of `splits` ("train", "val", "test") not read yet."""
        for split in splits:
            if split in self._splits_read:
                continue
            augmentation = build_augmentation(self.config.augment, seed=self.seed) if split == "train" else None
            parts = [self._read(source, split, augmentation) for source in getattr(self.config, split)]
            setattr(self, f"{split}_parts", parts)
            self._splits_read.add(split)

    @property
    def digest_images(self) -> bool:
        """Whether the loader workers hash each image: for the image feature cache, when there is one."""
        return self.images_cached is not None

    def train_dataloader(self) -> DataLoader:
        dataset = ConcatDataset(self.train_parts)
        sampler = self._mixture_sampler()
        # epochs drawn by weight show other images each time: the cache never holds the next one's
        images_cached = self.images_cached if sampler is None else None
        if self.config.group_by_length:
            if sampler is None:
                sampler = self._length_grouped_sampler()
            else:
                warn("data.group_by_length is ignored: sources with different weights are sampled by weight")
        if sampler is None and self._stable_shares():
            sampler = StableShareSampler(len(dataset), seed=self.seed, **self._shard())
        if sampler is None:
            sampler = DistributedSampler(dataset, shuffle=True, seed=self.seed, **self._shard())
        loader = self._loader(dataset, self.config.batch_size, False, ResumableSampler(sampler), images_cached)
        self._check_validation_interval(len(loader))
        return loader

    def _check_validation_interval(self, batches: int) -> None:
        """Refuse a validation interval, in batches, longer than an epoch (Lightning would, once
        training starts, in a traceback that names its own arguments and not the recipe's)."""
        trainer = getattr(self, "trainer", None)
        interval = getattr(trainer, "val_check_interval", None)
        if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or not self.val_parts:
            return
        if interval > batches:
            each = f" in each of the {trainer.world_size} processes" if trainer.world_size > 1 else ""
            raise RecipeError(
                f"trainer.val_check_interval is {interval} training batches, but an epoch has {batches}{each}: "
                "give fewer batches, a fraction of an epoch (0.5), or set trainer.check_val_every_n_epoch: null "
                "to count batches across epochs"
            )

    def _workers(self) -> int:
        """`data.num_workers`, with `auto` decided once for this machine's share of CPUs per process."""
        if self.config.num_workers != "auto":
            return self.config.num_workers
        if self.auto_workers is None:
            trainer = getattr(self, "trainer", None)
            processes = trainer.num_devices if trainer is not None else 1
            self.auto_workers = auto_workers(processes)
            say(f"data.num_workers: auto -> {self.auto_workers} loader worker process(es) per loader")
        return self.auto_workers

    def _shard(self) -> dict[str, int]:
        """This process's place among the processes, which deal out the training data and the
        evaluation splits. Training samplers are `DistributedSampler`s seeded by seed + epoch:
        Lightning leaves them alone and a resumed run redraws the same order."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank}

    def _stable_shares(self) -> bool:
        """Whether each process keeps its share of the training samples every epoch: with the image
        feature cache on (the workers digest images for it) and more than one process, so that each
        process's cache serves its epochs after the first (`f2tune.data.sampler`)."""
        return self.digest_images and self._shard()["num_replicas"] > 1

    def _length_grouped_sampler(self) -> LengthGroupedSampler:
        """Target lengths are counted once from the records (no image is opened)."""
        samples = [s for part in self.train_parts for s in part.samples]
        lengths = target_lengths(samples, self.processor.tokenizer, self.config.max_target_tokens)
        return LengthGroupedSampler(
            lengths, self.config.batch_size, seed=self.seed, stable_shares=self._stable_shares(), **self._shard()
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._evaluation_loader(self.val_parts)

    def test_dataloader(self) -> DataLoader | list:
        return self._evaluation_loader(self.test_parts)

    def tasks(self, splits: tuple[str, ...] = ("val", "test")) -> set[str]:
        """Task tokens of the samples of these evaluation splits ("" for free-text prompts)."""
        parts = [part for split in splits for part in getattr(self, f"{split}_parts")]
        return {s.task for part in parts for s in part.samples}

    def _evaluation_loader(self, parts: list[SampleDataset]) -> DataLoader | list:
        if not parts:
            return []
        batch_size = self.config.val_batch_size or self.config.batch_size
        dataset = ConcatDataset(parts)
        sampler = EvaluationSampler(len(dataset), **self._shard())
        return self._loader(PaddedDataset(dataset), batch_size, shuffle=False, sampler=sampler)

    def _read(self, source: DataSource, split: str, augmentation: Augmentation | None = None) -> SampleDataset:
        problems = RecordProblems(self.config.on_bad_record)
        samples = read_source(source, problems, split)
        name = source_name(source)
        if summary := problems.summary(f"{split} source '{name}'"):
            warn(summary)
        say(f"{split} source '{name}': {len(samples)} samples ({task_counts(samples)})")
        if augmentation is not None and (
            fixed := sum(s.reference is None and not moves_with_pixels(s.prompt, s.target) for s in samples)
        ):
            say(
                f"{split} source '{name}': {fixed} samples hold <loc_N> tokens in their text, which augmentation "
                "cannot move with the pixels: trained unaugmented (structured_jsonl records, in pixels, are augmented)"
            )
        return SampleDataset(samples, self.config.on_bad_record, augmentation)

    def _mixture_sampler(self) -> WeightedEpochSampler | None:
        """Sources share each epoch in proportion to their weights (1 where unset); None when no
        source of a mixture has a weight (then plain shuffling keeps every sample exactly once per
        epoch, and shares follow the sources' sizes)."""
        if len(self.config.train) < 2 or all(s.weight is None for s in self.config.train):
            return None
        weights = [1.0 if s.weight is None else s.weight for s in self.config.train]
        per_sample = torch.cat(
            [torch.full((len(part),), w / len(part), dtype=torch.double) for w, part in zip(weights, self.train_parts)]
        )
        return WeightedEpochSampler(per_sample, seed=self.seed, stable_shares=self._stable_shares(), **self._shard())

    def _loader(
        self,
        dataset,
        batch_size: int,
        shuffle: bool,
        sampler: Sampler | None = None,
        images_cached: SharedFlag | None = None,
    ) -> DataLoader:
        assert self.processor is not None, "attach a processor before asking for loaders"
        workers = self._workers()
        collate = Florence2Collator(
            self.processor,
            self.config.max_target_tokens,
            self.digest_images,
            images_cached,
            self.max_input_tokens,
            self.config.on_bad_record,
        )
        trainer = getattr(self, "trainer", None)
        options = dict(
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            worker_init_fn=WorkerStart(trainer.global_rank if trainer else None) if workers > 0 else None,
        )
        if not isinstance(sampler, ResumableSampler):
            return DataLoader(dataset, **options)
        # training: the loader's position (batches the training loop consumed) travels in checkpoints
        consumed = (lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed) if trainer else None
        return ResumableLoader(dataset, consumed_batches=consumed, **options)


MAX_AUTO_WORKERS = 8
"""The most worker processes `auto` starts per loader. Each one is a process with its own copy of
the records and the processor, and the validation loader keeps as many beside the training one's;
one worker delivers 60-100 Florence-2 samples/s at 768x768 (benchmarks/README.md): eight feed full
fine-tuning at 35% MFU on an H100 (~240 samples/s) with room to spare. Cached LoRA at that MFU
(~1200 samples/s) would take 12-20 in its first epoch; after it, once the workers send no pixels
(about 200 samples/s each), six or seven."""


def auto_workers(processes_on_this_machine: int) -> int:
    """Loader workers for `data.num_workers: auto`: Lightning's suggestion (the CPUs this process may
    run on, shared among the machine's training processes, less one for each of them), at most
    `MAX_AUTO_WORKERS`."""
    return min(MAX_AUTO_WORKERS, suggested_max_num_workers(max(processes_on_this_machine, 1)))


def task_counts(samples: list[Sample]) -> str:
    """`<OD> 120, free text 8`: the tasks a source's samples train, most common first (two
    sources over one dataset, one per task, carry the same name)."""
    counts = Counter(sample.task or "free text" for sample in samples)
    return ", ".join(f"{task} {count}" for task, count in counts.most_common())
