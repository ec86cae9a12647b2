"""`f2tune check-data --pictures DIR`: the first samples of each split's tasks drawn as training
reads them, before any training.

A wrong `box_format`, an `image_root` pointing at other images, boxes in another image's
coordinates or a polygon read as x/y swapped pass every check that reads numbers, and train a
model on wrong answers without an error. On a picture they show at a glance: the target, parsed
back into boxes, polygons, quads or text (or the structured answer itself), drawn on the image.
"""

from __future__ import annotations

import copy
from pathlib import Path

from f2tune.data.images import load_image
from f2tune.data.sample import Sample
from f2tune.data.transforms import Augmentation, moves_with_pixels
from f2tune.errors import DataError
from f2tune.eval.evaluator import task_label
from f2tune.predict.draw import draw_annotation, file_safe, readable
from f2tune.tasks import parse_output


class SamplePictures:
    """Draws up to `per_task` samples of each (split, task) into `folder`, as they come; training
    samples with structured answers through `augmentation` where the recipe has one, so that flips,
    crops and rotations can be seen to carry the boxes with the pixels."""

    def __init__(self, folder: Path, per_task: int, augmentation: Augmentation | None = None) -> None:
        self.folder = folder
        self.per_task = per_task
        self.augmentation = augmentation
        self.written: list[Path] = []
        self._drawn: dict[tuple[str, str], int] = {}

    def add(self, split: str, items: list[tuple[Sample, str, str]]) -> None:
        """Draw those of `items` (sample, prompt, target text) whose split and task still have room."""
        for sample, prompt, target in items:
            key = (split, sample.task)
            count = self._drawn.get(key, 0)
            if count >= self.per_task:
                continue
            try:
                image = load_image(sample.image, sample.origin)
            except DataError:
                continue  # reported by the check itself
            title = f"{split} | {sample.origin} | {prompt}"
            augmented = split == "train" and self.augmentation is not None
            if sample.reference is None:
                reference = parse_output(sample.task, target, image.size)
                if augmented and moves_with_pixels(prompt, target):  # as `SampleDataset` augments it
                    image = self.augmentation.text_sample(image, prompt, target)
                    title = f"{title} | augmented"
            elif augmented:
                image, reference, _ = self.augmentation(image, copy.deepcopy(sample.reference), task_text=sample.task)
                title = f"{title} | augmented"
            else:
                reference = sample.reference
            image, reference = readable(image, reference)
            picture = draw_annotation(image, reference, title)
            path = self.folder / f"{split}-{task_label(sample.task)}-{count:02d}-{file_safe(sample.id)}.png"
            self.folder.mkdir(parents=True, exist_ok=True)
            picture.save(path)
            self.written.append(path)
            self._drawn[key] = count + 1
