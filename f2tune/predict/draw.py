"""Pictures of predictions: boxes, polygons and OCR quads drawn with their labels on the image.

Users look at these before any metric, so every label stays readable: text on a filled tag in
the instance's colour, colours fixed per label so the same category looks the same everywhere.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from f2tune.tasks.schema import Annotation


def label_colour(label: str) -> tuple[int, int, int]:
    """A bright colour that is a function of the label text alone."""
    hue = int(hashlib.md5(label.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_annotation(image: Image.Image, annotation: Annotation, title: str = "") -> Image.Image:
    """A copy of `image` with every box, polygon and quad of `annotation` drawn and labelled;
    text answers (captions, OCR, VQA) are written in a band under the image."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas, "RGBA")
    font = ImageFont.load_default()
    width = max(2, round(min(canvas.size) / 200))
    labels = annotation.get("labels", [])
    scores = annotation.get("scores", [])
    for index, box in enumerate(annotation.get("boxes", [])):
        label = _caption(labels, scores, index)
        colour = label_colour(labels[index] if index < len(labels) else "")
        box = _ordered(box)
        draw.rectangle(box, outline=colour, width=width)
        _tag(draw, font, (box[0], box[1]), label, colour)
    for polygon in annotation.get("polygons", []):
        colour = label_colour(labels[0] if labels else "mask")
        points = list(zip(polygon[0::2], polygon[1::2]))
        if len(points) >= 3:
            draw.polygon(points, outline=colour, fill=(*colour, 70), width=width)
    for index, quad in enumerate(annotation.get("quads", [])):
        label = labels[index] if index < len(labels) else ""
        colour = label_colour(label)
        points = list(zip(quad[0::2], quad[1::2]))
        draw.polygon(points, outline=colour, width=width)
        _tag(draw, font, points[0], label, colour)
    if "region" in annotation:
        draw.rectangle(_ordered(annotation["region"]), outline=(255, 255, 255), width=width)
    text = annotation.get("text", "")
    if text or title:
        canvas = _with_caption(canvas, font, "\n".join(t for t in (title, text) if t))
    return canvas


def _ordered(box: list[float]) -> list[float]:
    """A box with x1 <= x2 and y1 <= y2: untrained or garbled outputs may swap corners."""
    x1, y1, x2, y2 = box
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def _caption(labels: list[str], scores: list[float], index: int) -> str:
    label = labels[index] if index < len(labels) else ""
    return f"{label} {scores[index]:.2f}".strip() if index < len(scores) else label


def _tag(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, corner: tuple[float, float], text: str, colour) -> None:
    if not text:
        return
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = corner[0], max(0.0, corner[1] - (bottom - top) - 4)
    draw.rectangle((x, y, x + right - left + 4, y + bottom - top + 4), fill=colour)
    draw.text((x + 2, y + 2 - top), text, fill=(0, 0, 0), font=font)


def _with_caption(image: Image.Image, font: ImageFont.ImageFont, text: str) -> Image.Image:
    probe = ImageDraw.Draw(image)
    lines = _wrap(probe, font, text, image.width - 8)
    line_height = probe.textbbox((0, 0), "Ag", font=font)[3] + 3
    band = Image.new("RGB", (image.width, image.height + line_height * len(lines) + 8), (255, 255, 255))
    band.paste(image, (0, 0))
    draw = ImageDraw.Draw(band)
    for row, line in enumerate(lines):
        draw.text((4, image.height + 4 + row * line_height), line, fill=(0, 0, 0), font=font)
    return band


def _wrap(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


READABLE_SIDE = (384, 768)
"""The longer side of a drawn image is brought into this range (pixels): a 96-pixel thumbnail
becomes readable, a 4000-pixel scan does not fill the screen or TensorBoard."""

COORDINATES = ("boxes", "polygons", "quads")


def readable(image: Image.Image, *annotations: Annotation) -> tuple[Image.Image, ...]:
    """`image` resized to a readable size (`READABLE_SIDE`), and each annotation's pixel
    coordinates scaled with it (text and labels as they are): (image, *annotations)."""
    low, high = READABLE_SIDE
    longer = max(image.size)
    factor = low / longer if longer < low else high / longer if longer > high else 1.0
    if factor == 1.0:
        return (image, *annotations)
    size = (round(image.width * factor), round(image.height * factor))
    return (image.resize(size, Image.Resampling.BICUBIC), *(_scaled(a, factor) for a in annotations))


def _scaled(annotation: Annotation, factor: float) -> Annotation:
    scaled: dict[str, Any] = dict(annotation)
    for key in COORDINATES:
        if key in annotation:
            scaled[key] = [[v * factor for v in shape] for shape in annotation[key]]
    if "region" in annotation:
        scaled["region"] = [v * factor for v in annotation["region"]]
    return scaled


def file_safe(text: str) -> str:
    """`text` (a sample id) as part of a picture's file name: anything but letters, digits, `_`, `.`
    and `-` becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
