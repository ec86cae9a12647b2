"""Image files: sizes from their headers, as `load_image` turns them upright."""

from __future__ import annotations

import pytest
from PIL import Image

from f2tune.data.images import load_image, upright_size
from f2tune.errors import DataError


@pytest.mark.parametrize(("orientation", "upright"), [(1, (60, 40)), (3, (60, 40)), (6, (40, 60)), (8, (40, 60))])
def test_upright_size_is_the_size_load_image_gives(tmp_path, orientation, upright) -> None:
    image = Image.new("RGB", (60, 40), "blue")
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "photo.jpg", exif=exif)
    assert upright_size(tmp_path / "photo.jpg") == upright == load_image(tmp_path / "photo.jpg", "test").size


def test_upright_size_names_missing_and_unreadable_files(tmp_path) -> None:
    with pytest.raises(DataError, match="image not found: .*gone.png"):
        upright_size(tmp_path / "gone.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image .*text.png"):
        upright_size(tmp_path / "text.png")
