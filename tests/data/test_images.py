"""Image files: sizes from their headers, as `load_image` turns them upright."""

from __future__ import annotations

import numpy as np
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


def test_an_image_past_pils_pixel_limit_is_named_with_what_to_do(tmp_path, monkeypatch) -> None:
    """PIL raises its own error (no OSError) for an image of more than twice `MAX_IMAGE_PIXELS`."""
    Image.new("RGB", (64, 64)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)
    expected = r"cannot read image .*huge.png: .* decompression bomb.*: shrink the image"
    with pytest.raises(DataError, match=rf"train.jsonl:3: {expected}"):
        load_image(tmp_path / "huge.png", "train.jsonl:3")
    with pytest.raises(DataError, match=expected):
        upright_size(tmp_path / "huge.png")


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16", [[0, 257 * 100], [65535, 32896]], [[0, 100], [255, 128]]),  # a 16-bit scan: scaled, not clipped
        ("I", [[0, 257 * 100], [65535, 32896]], [[0, 100], [255, 128]]),
        ("F", [[0.0, 0.5], [1.0, 0.25]], [[0, 128], [255, 64]]),  # floats in 0..1
        ("F", [[0.0, 100.0], [300.0, 7.0]], [[0, 100], [255, 7]]),  # floats in 0..255: clipped
        ("L", [[0, 100], [255, 7]], [[0, 100], [255, 7]]),
    ],
)
def test_images_wider_than_8_bits_are_scaled_to_8_bits(tmp_path, mode, values, expected) -> None:
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32, "L": np.uint8}[mode]
    image = Image.fromarray(np.asarray(values, dtype=dtype))
    path = tmp_path / ("image.tiff" if mode in ("I", "F") else "image.png")
    image.save(path)
    with Image.open(path) as opened:
        assert opened.mode == mode
    rgb = np.asarray(load_image(path, "test"))
    assert rgb.shape == (2, 2, 3)
    assert rgb[..., 0].tolist() == expected and (rgb[..., 0] == rgb[..., 2]).all()
