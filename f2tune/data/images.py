"""Opening image files with errors that name the file and the record that points to it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from f2tune.data.sample import RenderedImage
from f2tune.errors import DataError


def load_image(image: Path | RenderedImage, origin: str) -> Image.Image:
    """An RGB image, upright per its EXIF orientation; `DataError` naming the path if unreadable."""
    if not isinstance(image, Path):
        return image.render().convert("RGB")
    try:
        with Image.open(image) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            return upright.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{origin}: image not found: {image}") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{origin}: cannot read image {image}: {err}") from None
