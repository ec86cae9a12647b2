"""Pictures of a validation: the first samples of each task, the reference beside the prediction.

A metric says how much a run improved; a picture says what it gets wrong (boxes off by a few
pixels, polygons that leak, captions that repeat). Each generating validation draws the first
`eval.pictures` samples of every task on rank 0, writes them beside its predictions
(`predictions/<stage>-step<N>/pictures/`) and hands them to TensorBoard, whose step slider then
shows the same images getting better.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from PIL import Image

from f2tune.data.images import load_image
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.eval.evaluator import task_label
from f2tune.predict.draw import draw_annotation, file_safe, readable
from f2tune.tasks.schema import Annotation


def validation_pictures(
    records: Iterable[dict[str, Any]], samples: Iterable[Sample], per_task: int
) -> dict[str, Image.Image]:
    """`<TASK>-<k>-<id>` -> picture, for the first `per_task` records of each task.

    Records name their sample by task and id (one dataset read for two tasks numbers both alike);
    an id that several samples of a task share (two sources numbering their records alike) is
    left out rather than drawn on another sample's image."""
    by_key: dict[tuple[str, str], Sample | None] = {}
    for sample in samples:
        key = (sample.task, sample.id)
        by_key[key] = None if key in by_key else sample
    drawn: dict[str, int] = {}
    pictures: dict[str, Image.Image] = {}
    for record in records:
        label, sample = task_label(record["task"]), by_key.get((record["task"], record["id"]))
        if sample is None or drawn.get(label, 0) >= per_task:
            continue
        try:
            image = load_image(sample.image, sample.origin)
        except DataError:
            continue  # a file gone since the data was read: no picture, the run goes on
        name = f"{label}-{drawn.get(label, 0):02d}-{file_safe(sample.id)}"
        pictures[name] = side_by_side(image, record["reference"], record["prediction"], record["prompt"])
        drawn[label] = drawn.get(label, 0) + 1
    return pictures


def save_pictures(
    pictures: dict[str, Image.Image], folder: Path, loggers: Iterable[Logger], stage: str, step: int
) -> None:
    """Each picture as `folder/<name>.png` and, for TensorBoard, as image `<stage>/pictures/<name>` at `step`."""
    if not pictures:
        return
    folder.mkdir(parents=True, exist_ok=True)
    boards = [logger.experiment for logger in loggers if isinstance(logger, TensorBoardLogger)]
    for name, picture in pictures.items():
        picture.save(folder / f"{name}.png")
        for board in boards:
            board.add_image(f"{stage}/pictures/{name}", np.asarray(picture), step, dataformats="HWC")


def side_by_side(image: Image.Image, reference: Annotation, prediction: Annotation, prompt: str) -> Image.Image:
    """The reference drawn on the left, the prediction on the right, at a readable size."""
    image, reference, prediction = readable(image, reference, prediction)
    left = draw_annotation(image, reference, f"reference | {prompt}")
    right = draw_annotation(image, prediction, "prediction")
    canvas = Image.new("RGB", (left.width + right.width + 8, max(left.height, right.height)), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 8, 0))
    return canvas
