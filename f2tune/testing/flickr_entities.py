"""Flickr30k Entities' release layout on disk (Sentences/, Annotations/, split lists), written for
the tests and the shipped grounding recipe's stand-in data: the format's reader parses exactly
what the release holds, and this writes that."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

Entity = tuple[list[str], tuple[float, float, float, float] | None]
"""An annotation object: the entity ids it belongs to, and its box (x1, y1, x2, y2 in pixels from the
top-left corner) or None (a `nobndbox` object)."""


def write_entities_image(
    root: Path, image_id: str, captions: list[str], objects: list[Entity], size: tuple[int, int]
) -> None:
    """One image's `Sentences/<id>.txt` (the captions, phrases bracketed as `[/EN#<id>/<type> words]`)
    and `Annotations/<id>.xml`, its boxes written as the release writes them (1-based pixel indices)."""
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Sentences" / f"{image_id}.txt").write_text("".join(f"{caption}\n" for caption in captions))
    parts = [f"<annotation><filename>{image_id}.jpg</filename>"]
    parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for names, box in objects:
        parts.append("<object>" + "".join(f"<name>{escape(name)}</name>" for name in names))
        if box is None:
            parts.append("<nobndbox>1</nobndbox><scene>0</scene>")
        else:
            x1, y1, x2, y2 = box
            corners = {"xmin": x1 + 1, "ymin": y1 + 1, "xmax": x2, "ymax": y2}
            parts.append("<bndbox>" + "".join(f"<{k}>{v:g}</{k}>" for k, v in corners.items()) + "</bndbox>")
        parts.append("</object>")
    parts.append("</annotation>")
    (root / "Annotations" / f"{image_id}.xml").write_text("".join(parts))


def write_split(root: Path, split: str, image_ids: list[str]) -> None:
    """`<split>.txt`: the image ids of one split, one per line."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in image_ids))
