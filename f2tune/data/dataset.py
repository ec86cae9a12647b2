"""Map-style dataset over `Sample`s that opens images lazily, in the DataLoader workers.

Samples of structured formats carry their answer as an `Annotation`; their prompt and target text
are written here, after augmentation has moved the coordinates with the pixels.
"""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image
from torch.utils.data import Dataset

from f2tune.data.formats.structured import check_opened
from f2tune.data.images import load_image
from f2tune.data.problems import SKIP_HINT
from f2tune.data.sample import Sample
from f2tune.data.transforms import Augmentation
from f2tune.errors import DataError
from f2tune.tasks import build_prompt, format_target
from f2tune.tasks.checks import check_built_text
from f2tune.tasks.schema import Annotation


class SampleDataset(Dataset):
    """Items are dicts with the opened RGB image, prompt, target and the sample's task and
    reference; a sample that cannot be used raises, or with `skip` yields None (the collator counts it).

    Readers check that image files exist; whether they decode is only known when they are opened,
    which happens here, so the skip decision for corrupt files is made here.
    """

    def __init__(
        self,
        samples: list[Sample],
        on_bad_record: Literal["error", "skip"] = "error",
        augmentation: Augmentation | None = None,
    ) -> None:
        self.samples = samples
        self.on_bad_record = on_bad_record
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample = self.samples[index]
        try:
            return self._item(sample, load_image(sample.image, sample.origin))
        except DataError as err:
            if self.on_bad_record == "skip":
                return None
            raise DataError(f"{err}\n{SKIP_HINT}") from None

    def _item(self, sample: Sample, image: Image.Image) -> dict[str, Any]:
        reference, dropped = sample.reference, 0
        if reference is None:
            prompt, target = sample.prompt, sample.target
            if self.augmentation is not None:
                image = self.augmentation.text_sample(image, prompt, target)
        else:
            check_opened(sample, image.size)
            if self.augmentation is not None:
                image, reference, dropped = self.augmentation(image, reference, task_text=sample.task)
            prompt, target = sample_text(sample, reference, image.size)
        return {
            "id": sample.id,
            "origin": sample.origin,
            "image": image,
            "prompt": prompt,
            "target": target,
            "task": sample.task,
            "reference": reference,
            "dropped_annotations": dropped,
        }


def sample_text(sample: Sample, reference: Annotation, size: tuple[int, int]) -> tuple[str, str]:
    """The prompt and target of a structured sample, as training and check-data write them: its
    reference in the image of `size`, and no text that would train otherwise than it reads
    (`check_built_text`); a `DataError` naming the sample's record."""
    try:
        prompt, target = build_prompt(sample.task, reference, size), format_target(sample.task, reference, size)
    except DataError as err:
        raise DataError(f"{sample.origin}: {err}") from None
    if problem := check_built_text(prompt, target):
        raise DataError(f"{sample.origin}: {problem}")
    return prompt, target
