"""Opening image files with errors that name the file and the record that points to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from f2tune.data.sample import RenderedImage
from f2tune.errors import DataError


def existing_image(path: Path, where: str) -> Path:
    """The image path, or DataError naming it: found now rather than mid-epoch."""
    if path.is_dir():
        raise DataError(f"{where}: the image is a folder, not a file: {path}")
    if not path.is_file():
        raise DataError(f"{where}: image not found: {path}")
    return path


def load_image(image: Path | RenderedImage, origin: str) -> Image.Image:
    """An RGB image, upright per its EXIF orientation; `DataError` naming the path if unreadable."""
    if not isinstance(image, Path):
        return as_rgb(image.render())
    try:
        with Image.open(image) as opened:
            opened.load()
            return as_rgb(ImageOps.exif_transpose(opened))
    except FileNotFoundError:
        raise DataError(f"{origin}: image not found: {image}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DataError(f"{origin}: cannot read image {image}: {reason(err)}") from None


WIDE_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
"""One-channel modes of more than 8 bits (16-bit PNG and TIFF scans, depth maps; "I" read as 16-bit)."""


def as_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB. PIL's own `convert("RGB")` clips wider values at 255 instead of
    scaling them: a 16-bit grey scan comes out nearly white, a float image in 0..1 black. Those
    are scaled to 0..255 here (16-bit: / 257; floats: x 255 when they lie in 0..1, else clipped)."""
    if image.mode in WIDE_INTEGER_MODES:
        values = np.asarray(image, dtype=np.float32) / 257.0
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        values = values * 255.0 if values.size and values.min() >= 0.0 and values.max() <= 1.0 else values
    else:
        return image.convert("RGB")
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")


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
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {image}: {reason(err)}") from None
    return (height, width) if turned else (width, height)


def reason(err: Exception) -> str:
    """PIL's reason an image cannot be opened; for one past its pixel limit (`MAX_IMAGE_PIXELS`,
    about 179 million, a guard against files that decompress to gigabytes), what to do."""
    if isinstance(err, Image.DecompressionBombError):
        return f"{err} (PIL's guard against decompression bombs): shrink the image"
    return str(err)
