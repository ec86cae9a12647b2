"""`Sample`: the one record type every dataset format is read into."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from f2tune.tasks.schema import Annotation


class RenderedImage(Protocol):
    """An image made in code on demand (synthetic data), so large datasets need no image memory."""

    def render(self) -> Image.Image: ...


@dataclass(frozen=True)
class Sample:
    """One training example: an image, the prompt the model sees, and the text it must answer.

    `origin` says where the record came from (`file.jsonl:12`), so every later error can point
    the user at the line to fix. `task` is the task token the sample trains (or "" for a free-text
    prompt) and `reference` its structured answer, when the format has one, for task metrics.
    """

    id: str
    image: Path | RenderedImage
    prompt: str
    target: str
    origin: str
    task: str = ""
    reference: Annotation | None = None
    declared_size: tuple[float, float] | None = None
    """The image's width and height as the annotation file states them (COCO's `width`/`height`),
    whose frame the reference's coordinates are in: the opened image must have that size."""
