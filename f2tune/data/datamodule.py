"""Lightning datamodule: reads every source of the recipe, mixes training sources by weight."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Sampler, WeightedRandomSampler
from transformers import Florence2Processor

from f2tune.config import DataConfig, DataSource
from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.formats import read_source, source_name
from f2tune.data.problems import RecordProblems
from f2tune.data.transforms import Augmentation, build_augmentation
from f2tune.log import say, warn


class Florence2DataModule(pl.LightningDataModule):
    """Datasets and loaders for one recipe. Every process reads the (small) record lists itself;
    images are opened lazily by the loader workers.

    The processor may be attached after `setup`, so that bad records are reported before anything
    is downloaded or loaded.
    """

    def __init__(self, config: DataConfig, processor: Florence2Processor | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.processor = processor
        self.seed = seed
        self.train_parts: list[SampleDataset] = []
        self.val_parts: list[SampleDataset] = []
        self.test_parts: list[SampleDataset] = []

    def setup(self, stage: str | None = None) -> None:
        if not self.train_parts:
            augmentation = build_augmentation(self.config.augment, seed=self.seed)
            self.train_parts = [self._read(s, "train", augmentation) for s in self.config.train]
            self.val_parts = [self._read(s, "val") for s in self.config.val]
            self.test_parts = [self._read(s, "test") for s in self.config.test]

    def train_dataloader(self) -> DataLoader:
        dataset = ConcatDataset(self.train_parts)
        sampler = self._mixture_sampler(len(dataset))
        return self._loader(dataset, self.config.batch_size, shuffle=sampler is None, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        return self._evaluation_loader(self.val_parts)

    def test_dataloader(self) -> DataLoader | list:
        return self._evaluation_loader(self.test_parts)

    def tasks(self) -> set[str]:
        """Task tokens of the validation and test samples ("" for free-text prompts)."""
        return {s.task for part in self.val_parts + self.test_parts for s in part.samples}

    def _evaluation_loader(self, parts: list[SampleDataset]) -> DataLoader | list:
        if not parts:
            return []
        batch_size = self.config.val_batch_size or self.config.batch_size
        return self._loader(ConcatDataset(parts), batch_size, shuffle=False)

    def _read(self, source: DataSource, split: str, augmentation: Augmentation | None = None) -> SampleDataset:
        problems = RecordProblems(self.config.on_bad_record)
        samples = read_source(source, problems)
        name = source_name(source)
        if summary := problems.summary(f"{split} source '{name}'"):
            warn(summary)
        say(f"{split} source '{name}': {len(samples)} samples")
        return SampleDataset(samples, self.config.on_bad_record, augmentation)

    def _mixture_sampler(self, total: int) -> Sampler | None:
        """Sources share each epoch in proportion to their weights; None when all weights are equal
        (then plain shuffling keeps every sample exactly once per epoch)."""
        weights = [s.weight for s in self.config.train]
        if len(set(weights)) <= 1:
            return None
        per_sample = torch.cat(
            [torch.full((len(part),), w / len(part), dtype=torch.double) for w, part in zip(weights, self.train_parts)]
        )
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(per_sample, num_samples=total, replacement=True, generator=generator)

    def _loader(self, dataset, batch_size: int, shuffle: bool, sampler: Sampler | None = None) -> DataLoader:
        assert self.processor is not None, "attach a processor before asking for loaders"
        workers = self.config.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            collate_fn=Florence2Collator(self.processor, self.config.max_target_tokens),
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )
