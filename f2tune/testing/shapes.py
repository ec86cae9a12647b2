"""Synthetic 'coloured shapes' data: one shape per image, captioned as `a <colour> <shape>`.

Small enough to learn in a minute on a CPU with the tiny model, hard enough that an untrained model
scores zero: the demo's before/after metric shows that training really happened.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from f2tune.data.sample import Sample

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 60, 220),
    "yellow": (235, 210, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


@dataclass(frozen=True)
class ShapeImage:
    """Everything needed to draw one image again, identically: drawn on demand, never stored."""

    size: int
    colour: str
    shape: str
    box: tuple[int, int, int, int]
    background: tuple[int, int, int]

    def render(self) -> Image.Image:
        image = Image.new("RGB", (self.size, self.size), self.background)
        self._draw(ImageDraw.Draw(image), COLOURS[self.colour])
        return image

    def mask(self) -> Image.Image:
        """The shape's pixels as 1 on 0 (mode L), drawn exactly as `render` draws them."""
        mask = Image.new("L", (self.size, self.size), 0)
        self._draw(ImageDraw.Draw(mask), 1)
        return mask

    def _draw(self, draw: ImageDraw.ImageDraw, fill: int | tuple[int, int, int]) -> None:
        x1, y1, x2, y2 = self.box
        if self.shape == "circle":
            draw.ellipse(self.box, fill=fill)
        elif self.shape == "square":
            draw.rectangle(self.box, fill=fill)
        else:
            draw.polygon([((x1 + x2) // 2, y1), (x2, y2), (x1, y2)], fill=fill)


def shape_samples(num_samples: int, seed: int = 0, image_size: int = 96, name: str = "shapes") -> list[Sample]:
    """`num_samples` captioning samples; the same seed gives the same images and captions."""
    rng = random.Random(seed)
    samples = []
    for index in range(num_samples):
        colour = rng.choice(list(COLOURS))
        shape = rng.choice(SHAPES)
        side = rng.randint(image_size * 3 // 10, image_size * 6 // 10)
        x1 = rng.randint(0, image_size - side - 1)
        y1 = rng.randint(0, image_size - side - 1)
        grey = rng.randint(90, 160)
        image = ShapeImage(image_size, colour, shape, (x1, y1, x1 + side, y1 + side), (grey, grey, grey))
        samples.append(
            Sample(
                id=f"{name}-{seed}-{index}",
                image=image,
                prompt="<CAPTION>",
                target=f"a {colour} {shape}",
                origin=f"{name}(seed={seed})#{index}",
                task="<CAPTION>",
            )
        )
    return samples
