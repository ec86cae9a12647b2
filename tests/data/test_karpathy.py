"""Karpathy's caption split files as released: the chosen splits only, images under filepath/filename."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.formats import read_source, source_name
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError

SPLITS = {
    "dataset": "coco",
    "images": [
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000000042.jpg",
            "imgid": 0,
            "split": "test",
            "cocoid": 42,
            "sentences": [{"raw": "A cat on a mat. ", "tokens": ["a", "cat"]}, {"raw": "A sleepy cat."}],
        },
        {
            "filepath": "train2014",
            "filename": "COCO_train2014_000000000007.jpg",
            "imgid": 1,
            "split": "train",
            "cocoid": 7,
            "sentences": [{"raw": "A dog."}],
        },
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000000009.jpg",
            "imgid": 2,
            "split": "restval",
            "cocoid": 9,
            "sentences": [{"raw": "Two birds."}],
        },
    ],
}


def write(tmp_path: Path, data: dict = SPLITS) -> Path:
    for entry in SPLITS["images"]:
        (tmp_path / entry["filepath"]).mkdir(exist_ok=True)
        Image.new("RGB", (16, 16)).save(tmp_path / entry["filepath"] / entry["filename"])
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data))
    return path


def source(path: Path, splits: list[str], **options):
    entry = {"format": "karpathy_captions", "path": str(path), "image_root": str(path.parent), "splits": splits}
    entry |= {"one_per_image": False, **options}  # a sample per caption unless a test asks (as in data.train)
    return DataConfig(train=[{"format": "shapes"}], val=[entry]).val[0]  # one_per_image: evaluation only


def read(path: Path, splits: list[str], policy: str = "error", **options) -> tuple[list, RecordProblems]:
    problems = RecordProblems(policy)
    return read_source(source(path, splits, **options), problems), problems


def test_training_splits_give_one_sample_per_caption(tmp_path):
    samples, _ = read(write(tmp_path), ["train", "restval"])
    assert [(s.id, s.reference, s.task) for s in samples] == [
        ("7-0", {"text": "A dog."}, "<CAPTION>"),
        ("9-0", {"text": "Two birds."}, "<CAPTION>"),
    ]
    assert samples[0].image == tmp_path / "train2014" / "COCO_train2014_000000000007.jpg"
    assert samples[0].origin == f"{tmp_path / 'dataset_coco.json'}:images[1] (id 7) sentence 0"
    assert source_name(source(tmp_path / "dataset_coco.json", ["train", "restval"])) == "dataset_coco-train+restval"


def test_evaluation_split_keeps_every_caption_of_an_image(tmp_path):
    (sample,), _ = read(write(tmp_path), ["test"], one_per_image=True)
    assert sample.id == "42"
    assert sample.reference == {"text": "A cat on a mat.", "answers": ["A cat on a mat.", "A sleepy cat."]}


def test_flickr_entries_without_filepath_or_cocoid(tmp_path):
    data = {"images": [{"filename": "1000.jpg", "imgid": 3, "split": "val", "sentences": [{"raw": "A man."}]}]}
    Image.new("RGB", (8, 8)).save(tmp_path / "1000.jpg")
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps(data))
    (sample,), _ = read(path, ["val"])
    assert (sample.id, sample.image) == ("3-0", tmp_path / "1000.jpg")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["images"][1].update(sentences=[]), "images[1] (id 7): 'sentences' must be a non-empty list"),
        (lambda d: d["images"][1]["sentences"][0].pop("raw"), "images[1] (id 7): sentences[0] has no 'raw' caption"),
        (lambda d: d["images"][1].pop("filename"), "images[1] (id 7): 'filename' (and 'filepath', where given)"),
        (lambda d: d["images"].append("nope"), "images[3]: expected an object, got str"),
        (lambda d: d.pop("images"), "missing top-level key(s) images (is this a Karpathy split file?)"),
    ],
)
def test_bad_entries_are_named(tmp_path, change, expected):
    data = json.loads(json.dumps(SPLITS))
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(DataError) as caught:
        read(path, ["train"])
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_entries_of_other_splits_are_not_checked(tmp_path):
    data = json.loads(json.dumps(SPLITS))
    data["images"][0]["sentences"] = "broken"  # a test image
    samples, _ = read(write(tmp_path, data), ["train"])
    assert [s.id for s in samples] == ["7-0"]


def test_missing_image_skip_and_an_empty_selection(tmp_path):
    path = write(tmp_path)
    missing = tmp_path / "train2014" / "COCO_train2014_000000000007.jpg"
    missing.unlink()
    with pytest.raises(DataError, match=f"images\\[1\\] \\(id 7\\): image not found: {missing}"):
        read(path, ["train", "restval"])
    samples, problems = read(path, ["train", "restval"], policy="skip")
    assert [s.id for s in samples] == ["9-0"] and len(problems.found) == 1
    with pytest.raises(DataError, match=r"dataset_coco.json \(splits val\): the dataset is empty"):
        read(path, ["val"])


def test_splits_are_named_and_required():
    with pytest.raises(ValueError, match="splits"):
        DataConfig(train=[{"format": "karpathy_captions", "path": "d.json", "image_root": ".", "splits": []}])
    with pytest.raises(ValueError, match="splits"):
        DataConfig(train=[{"format": "karpathy_captions", "path": "d.json", "image_root": ".", "splits": ["tran"]}])
