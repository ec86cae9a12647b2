"""Map-style dataset over `Sample`s that opens images lazily, in the DataLoader workers.

Samples of structured formats carry their answer as an `Annotation`; their prompt and target text
are written here, after augmentation has moved the coordinates with the pixels.
"""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image
from torch.utils.data import Dataset

from f2tune.data.formats.structured import OPENED_IMAGE_HINT, check_inside, check_opened_size
from f2tune.data.images import load_image
from f2tune.data.problems import SKIP_HINT
from f2tune.data.sample import Sample
from f2tune.data.transforms import Augmentation
from f2tune.errors import DataError
from f2tune.tasks import build_prompt, format_target
from f2tune.tasks.checks import check_built_text


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
            if self.augmentation is not None and "<loc_" not in prompt + target:
                # nothing to move with the pixels; captions naming a side are not flipped
                image, _, _ = self.augmentation(image, {"text": target}, task_text=prompt, warp=False)
        else:
            check_opened_size(sample, image.size)
            check_inside(reference, image.size, sample.origin, OPENED_IMAGE_HINT)
            if self.augmentation is not None:
                image, reference, dropped = self.augmentation(image, reference, task_text=sample.task)
            try:
                prompt = build_prompt(sample.task, reference, image.size)
                target = format_target(sample.task, reference, image.size)
            except DataError as err:
                raise DataError(f"{sample.origin}: {err}") from None
            if problem := check_built_text(prompt, target):
                raise DataError(f"{sample.origin}: {problem}")
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
