"""Opening image files with errors that name the file and the record that points to it."""

from __future__ import annotations

from pathlib import Path

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

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


TURNED_ORIENTATIONS = frozenset({5, 6, 7, 8})
"""EXIF orientations that turn the image a quarter: upright, its width and height swap."""


def upright_size(image: Path) -> tuple[int, int]:
    """(width, height) of the image as `load_image` returns it, from the file's header only (nothing
    decoded); `DataError` naming the path if it is missing or not an image PIL knows."""
    try:
        with Image.open(image) as opened:
            width, height = opened.size
            turned = opened.getexif().get(ExifTags.Base.Orientation) in TURNED_ORIENTATIONS
    except FileNotFoundError:
        raise DataError(f"image not found: {image}") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {image}: {err}") from None
    return (height, width) if turned else (width, height)
