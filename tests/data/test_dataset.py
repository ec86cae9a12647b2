"""Images are opened in the dataset: unreadable ones are named, or skipped and counted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import AugmentConfig
from f2tune.data.dataset import SampleDataset
from f2tune.data.images import load_image
from f2tune.data.sample import Sample
from f2tune.data.transforms import build_augmentation
from f2tune.errors import DataError
from f2tune.tasks import format_target


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


def structured_sample(tmp_path: Path, reference: dict, task: str = "<OD>") -> Sample:
    path = tmp_path / "scene.png"
    Image.new("RGB", (200, 100)).save(path)
    return Sample(id="s", image=path, prompt="", target="", origin="coco.json:image 3", task=task, reference=reference)


@pytest.mark.parametrize(
    ("stored", "exif", "declared", "why"),
    [
        ((200, 100), None, (400, 200), "resized after annotating"),
        ((200, 100), 6, (200, 100), "its EXIF orientation turns it"),
    ],
)
def test_an_image_of_another_size_than_its_annotation_says_is_refused(tmp_path, stored, exif, declared, why):
    """The box fits inside both frames: it trained, doubled or turned, in the wrong place."""
    path = tmp_path / "scene.jpg"
    orientation = Image.Exif()
    if exif:
        orientation[0x0112] = exif
    Image.new("RGB", stored).save(path, exif=orientation)
    reference = {"boxes": [[10.0, 10.0, 40.0, 40.0]], "labels": ["cat"]}
    sample = Sample("s", path, "", "", "coco.json:image 3", "<OD>", reference, declared_size=declared)
    opened = "100x200" if exif else "200x100"
    message = f"coco.json:image 3: the image is {opened} as opened, but the annotation says {declared[0]}x{declared[1]}"
    with pytest.raises(DataError, match=re.escape(message) + f".*{why}"):
        SampleDataset([sample])[0]
    assert SampleDataset([Sample("s", path, "", "", "o", "<OD>", reference, declared_size=load_image(path, "o").size)])[
        0
    ]


@pytest.mark.parametrize(
    ("task", "reference", "problem"),
    [
        ("<CAPTION>", {"text": "a red </s> square"}, "the target has </s>"),
        ("<OCR_WITH_REGION>", {"quads": [[1, 1, 50, 1, 50, 20, 1, 20]], "labels": ["STOP</s>"]}, "the target has </s>"),
        ("<CAPTION>", {"text": "a square <loc_1000>"}, "the target has <loc_1000>, which is no location token"),
        ("", {"query": "what <pad> colour is it?", "text": "red"}, "the prompt has <pad>"),
    ],
)
def test_special_tokens_in_the_text_of_an_annotation_are_refused(tmp_path, task, reference, problem):
    """`jsonl` refused them; built from an annotation's fields they trained (a `</s>` in an OCR line
    teaches the model to stop there)."""
    with pytest.raises(DataError, match=re.escape(f"coco.json:image 3: {problem}")):
        SampleDataset([structured_sample(tmp_path, reference, task)])[0]


def test_structured_samples_get_prompt_and_target_from_their_reference(tmp_path):
    reference = {"boxes": [[10.0, 20.0, 110.0, 70.0]], "labels": ["cat"]}
    item = SampleDataset([structured_sample(tmp_path, reference)])[0]
    assert item["prompt"] == "<OD>"
    assert item["target"] == format_target("<OD>", reference, (200, 100)) == "cat<loc_50><loc_200><loc_550><loc_700>"
    assert item["task"] == "<OD>" and item["reference"] == reference


def test_augmentation_moves_the_target_with_the_pixels(tmp_path):
    reference = {"boxes": [[10.0, 20.0, 110.0, 70.0]], "labels": ["cat"]}
    flip = build_augmentation(AugmentConfig(enabled=True, hflip=1.0), seed=0)
    item = SampleDataset([structured_sample(tmp_path, reference)], augmentation=flip)[0]
    assert item["reference"]["boxes"] == [[90.0, 20.0, 190.0, 70.0]]
    assert item["target"] == "cat<loc_450><loc_200><loc_950><loc_700>"


@pytest.mark.parametrize(
    ("prompt", "target", "flipped"),
    [
        ("<CAPTION>", "a red square", True),
        ("<CAPTION>", "a red square on the left", False),  # a side named: never flipped
        ("<OD>", "square<loc_0><loc_0><loc_499><loc_999>", False),  # locations in text cannot move
        ("<OCR>", "EXIT", False),  # mirrored, the picture holds no text its answer spells
    ],
)
def test_text_samples_are_augmented_where_nothing_in_their_text_would_move(tmp_path, prompt, target, flipped):
    """Prompt/target samples (jsonl, dataset columns) trained unaugmented with data.augment on."""
    path = tmp_path / "half.png"
    image = Image.new("RGB", (40, 20))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # the left half white
    image.save(path)
    flip = build_augmentation(AugmentConfig(enabled=True, hflip=1.0), seed=0)
    item = SampleDataset([Sample("s", path, prompt, target, "x.jsonl:1")], augmentation=flip)[0]
    assert (item["image"].getpixel((0, 0)) == (0, 0, 0)) is flipped
    assert (item["prompt"], item["target"]) == (prompt, target)


def test_text_samples_are_not_warped_and_ocr_is_never_flipped(tmp_path):
    """A crop may cut away what a text answer counts or reads; a mirrored line reads as no text."""
    path = tmp_path / "half.png"
    image = Image.new("RGB", (40, 20))
    image.paste((255, 255, 255), (0, 0, 20, 20))
    image.save(path)
    zoom = build_augmentation(AugmentConfig(enabled=True, scale=(2.0, 2.0)), seed=0)
    item = SampleDataset([Sample("s", path, "<CAPTION>", "two halves", "x.jsonl:1")], augmentation=zoom)[0]
    assert item["image"].tobytes() == Image.open(path).convert("RGB").tobytes()
    # Structured samples answered by text alone (OCR, VQA, caption readers) were zoomed: the text
    # they read was cut away while their target stayed.
    for task, reference in [("<OCR>", {"text": "EXIT"}), ("", {"query": "what is written?", "text": "EXIT"})]:
        structured = Sample("s", path, "", "", "o.jsonl:1", task, reference)
        item = SampleDataset([structured], augmentation=zoom)[0]
        assert item["image"].tobytes() == Image.open(path).convert("RGB").tobytes(), task or "VQA"
    flip = build_augmentation(AugmentConfig(enabled=True, hflip=1.0), seed=0)
    quad = {"quads": [[1, 1, 19, 1, 19, 19, 1, 19]], "labels": ["EXIT"]}
    ocr = Sample("s", path, "", "", "o.jsonl:1", "<OCR_WITH_REGION>", quad)
    assert SampleDataset([ocr], augmentation=flip)[0]["reference"]["quads"] == quad["quads"]
    region = {"region": [1.0, 1.0, 19.0, 19.0], "text": "EXIT"}  # the region's text, mirrored, was read as EXIT
    region_ocr = Sample("s", path, "", "", "o.jsonl:1", "<REGION_TO_OCR>", region)
    assert SampleDataset([region_ocr], augmentation=flip)[0]["reference"]["region"] == region["region"]


def test_a_reference_the_task_cannot_use_names_its_record(tmp_path):
    bad = structured_sample(tmp_path, {"boxes": [[50.0, 20.0, 10.0, 70.0]], "labels": ["cat"]})
    with pytest.raises(DataError, match="coco.json:image 3: "):
        SampleDataset([bad])[0]
    assert SampleDataset([bad], on_bad_record="skip")[0] is None


def test_truncated_and_empty_image_files_are_named(tmp_path):
    full = tmp_path / "full.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(full)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full.read_bytes()[:-200])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path in (truncated, empty):
        with pytest.raises(DataError, match=f"train.jsonl:7: cannot read image {path}"):
            SampleDataset([sample_for(path)])[0]


def test_a_zero_size_image_is_reported(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 8 + b"\x08\x02\x00\x00\x00" + b"\x00" * 4)
    with pytest.raises(DataError, match="cannot read image"):
        SampleDataset([sample_for(path)])[0]


@pytest.mark.parametrize(
    ("reference", "task", "outside"),
    [
        ({"boxes": [[10.0, 20.0, 260.0, 70.0]], "labels": ["cat"]}, "<OD>", "boxes[0] lies outside the 200x100 image"),
        ({"region": [0.0, 0.0, 50.0, 150.0], "text": "cat"}, "<REGION_TO_CATEGORY>", "region lies outside the 200x100"),
        ({"query": "a", "polygons": [[1.0, 1.0, 9.0, 1.0, 5.0, 180.0]]}, "<REFERRING_EXPRESSION_SEGMENTATION>", ""),
    ],
)
def test_coordinates_past_the_opened_image_are_named_not_clamped_to_its_edge(tmp_path, reference, task, outside):
    """A structured record without width/height, or an annotation file whose sizes are not those of
    the files (images resized on disk): checked against the image as opened."""
    bad = structured_sample(tmp_path, reference, task)
    expected = f"coco.json:image 3: {re.escape(outside)}.* are they for another size or orientation of it"
    with pytest.raises(DataError, match=expected):
        SampleDataset([bad])[0]
    assert SampleDataset([bad], on_bad_record="skip")[0] is None
