"""COCO captions: one sample per caption for training, one per image with all captions for validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError

CAPTIONS = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 16, "height": 16},
        {"id": 2, "file_name": "b.png", "width": 16, "height": 16},
    ],
    "annotations": [
        {"id": 7, "image_id": 1, "caption": "A cat on a mat. "},
        {"id": 8, "image_id": 2, "caption": "A dog."},
        {"id": 9, "image_id": 1, "caption": "A sleepy cat."},
    ],
}


def write(tmp_path: Path, data: dict = CAPTIONS) -> Path:
    (tmp_path / "val2017").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (16, 16)).save(tmp_path / "val2017" / name)
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps(data))
    return path


def read(path: Path, policy: str = "error", **options) -> tuple[list, RecordProblems]:
    entry = {"format": "coco_captions", "path": str(path), "image_root": str(path.parent / "val2017")}
    entry |= {"one_per_image": False, **options}  # a sample per caption unless a test asks (as in data.train)
    problems = RecordProblems(policy)
    return read_source(DataConfig(train=[{"format": "shapes"}], val=[entry]).val[0], problems, "val"), problems


def test_one_sample_per_caption(tmp_path):
    samples, _ = read(write(tmp_path))
    assert [(s.id, s.reference) for s in samples] == [
        ("1-7", {"text": "A cat on a mat."}),
        ("1-9", {"text": "A sleepy cat."}),
        ("2-8", {"text": "A dog."}),
    ]
    assert samples[0].task == "<CAPTION>" and (samples[0].prompt, samples[0].target) == ("", "")
    assert samples[0].image == tmp_path / "val2017" / "a.png"


def test_one_per_image_keeps_every_caption(tmp_path):
    samples, _ = read(write(tmp_path), one_per_image=True, task="<DETAILED_CAPTION>")
    assert [s.id for s in samples] == ["1", "2"]
    assert samples[0].reference == {"text": "A cat on a mat.", "answers": ["A cat on a mat.", "A sleepy cat."]}
    assert samples[0].task == "<DETAILED_CAPTION>"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["annotations"][1].update(image_id=5), "annotation 8: image_id 5 is not listed in 'images'"),
        (lambda d: d["annotations"][1].update(caption=""), "annotation 8: 'caption' must be a non-empty string"),
        (lambda d: d["annotations"][2].pop("caption"), "annotation 9: missing key(s) caption"),
        (lambda d: d["images"][1].update(height=0), "image 2: width and height must be positive"),
        (lambda d: d.pop("images"), "missing top-level key(s) images"),
    ],
)
def test_bad_records_are_named(tmp_path, change, expected):
    data = json.loads(json.dumps(CAPTIONS))
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(DataError) as caught:
        read(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_missing_image_and_skip(tmp_path):
    path = write(tmp_path)
    (tmp_path / "val2017" / "b.png").unlink()
    with pytest.raises(DataError, match=f"image 2: image not found: {tmp_path / 'val2017' / 'b.png'}"):
        read(path)
    samples, problems = read(path, policy="skip")
    assert [s.id for s in samples] == ["1-7", "1-9"] and len(problems.found) == 1
