"""Which images `f2tune predict` reads, and the picture file each one gets."""

from __future__ import annotations

from pathlib import Path

from f2tune.data.images import upright_size
from f2tune.errors import DataError, first_few

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""What a folder given to `predict` is searched for (case-insensitive); files named directly may be any
format PIL opens."""


def image_files(paths: list[Path]) -> list[Path]:
    """The files given, with each folder replaced by the image files directly inside it (sorted)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"image not found: {first_few(missing)}")
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{path}: a folder with no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
    return files


def image_sizes(files: list[Path]) -> list[tuple[int, int]]:
    """Each image's upright (width, height), read from the file headers before the model loads, so
    that a file in a folder of thousands that is no image stops the run before any work, with every
    such file named at once, not when its batch comes (the output is written all or nothing)."""
    sizes, problems = [], []
    for file in files:
        try:
            sizes.append(upright_size(file))
        except DataError as err:
            problems.append(str(err))
    if problems:
        raise DataError(f"{len(problems)} of {len(files)} images cannot be read: {first_few(problems, '; ')}")
    return sizes


def picture_names(images: list[Path]) -> list[str]:
    """`<image stem>.png` per image; a stem seen before gets `-2`, `-3`... (a/1.jpg and b/1.jpg would
    otherwise draw over each other's picture)."""
    names, taken = [], set()
    for image in images:
        name, count = f"{image.stem}.png", 1
        while name.lower() in taken:
            count += 1
            name = f"{image.stem}-{count}.png"
        taken.add(name.lower())
        names.append(name)
    return names
