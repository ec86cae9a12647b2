"""Images are opened in the dataset: unreadable ones are named, or skipped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from f2tune.data.dataset import SampleDataset
from f2tune.data.images import load_image
from f2tune.data.sample import Sample
from f2tune.errors import DataError


def sample_for(path: Path) -> Sample:
    return Sample(id="s", image=path, prompt="<CAPTION>", target="x", origin="train.jsonl:7")


def test_corrupt_image_is_named_with_its_record(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=f"train.jsonl:7: cannot read image {path}"):
        SampleDataset([sample_for(path)])[0]


def test_corrupt_image_is_skipped_when_asked(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"garbage")
    assert SampleDataset([sample_for(path)], on_bad_record="skip")[0] is None


def test_image_deleted_after_reading_is_named(tmp_path):
    with pytest.raises(DataError, match="train.jsonl:7: image not found: .*gone.png"):
        load_image(tmp_path / "gone.png", "train.jsonl:7")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_any_pixel_format_becomes_rgb(tmp_path, mode):
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    Image.new(mode, (10, 6)).save(path)
    image = SampleDataset([sample_for(path)])[0]["image"]
    assert image.mode == "RGB" and image.size == (10, 6)


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert load_image(path, "x").size == (20, 40)
