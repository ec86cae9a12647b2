"""Map-style dataset over `Sample`s that opens images lazily, in the DataLoader workers."""

from __future__ import annotations

from typing import Any, Literal

from torch.utils.data import Dataset

from f2tune.data.images import load_image
from f2tune.data.sample import Sample
from f2tune.errors import DataError


class SampleDataset(Dataset):
    """Items are dicts with the opened RGB image; an unreadable image raises, or with `skip` yields None.

    Readers check that image files exist; whether they decode is only known when they are opened,
    which happens here, so the skip decision for corrupt files is made here and counted by the collator.
    """

    def __init__(self, samples: list[Sample], on_bad_record: Literal["error", "skip"] = "error") -> None:
        self.samples = samples
        self.on_bad_record = on_bad_record

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample = self.samples[index]
        try:
            image = load_image(sample.image, sample.origin)
        except DataError:
            if self.on_bad_record == "skip":
                return None
            raise
        return {"id": sample.id, "image": image, "prompt": sample.prompt, "target": sample.target}
