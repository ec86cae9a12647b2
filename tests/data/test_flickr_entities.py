"""Flickr30k Entities as released: one phrase-grounding sample per caption, boxes named by their phrase."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.dataset import SampleDataset
from f2tune.data.formats import read_source, source_name
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError
from f2tune.tasks import parse_output
from f2tune.testing.flickr_entities import write_entities_image, write_split

CAPTIONS = [
    "[/EN#1/people Two men] kick [/EN#3/other a ball] in [/EN#4/scene the park] .",
    "[/EN#1/people Two men] play outside .",
    "[/EN#4/scene A park] on a sunny day .",  # no phrase with a box: nothing to ground
    "[/EN#2/people/other A man in red] watches [/EN#1/people his friends] .",
]
OBJECTS = [
    (["1"], (0, 0, 10, 20)),
    (["1", "2"], (20, 0, 30, 20)),  # one box for two entities: the second man is also "a man in red"
    (["3"], (30, 25, 36, 30)),
    (["4"], None),
]


def release(tmp_path: Path, captions: list[str] = CAPTIONS, objects=OBJECTS, image: bool = True) -> Path:
    root = tmp_path / "flickr30k_entities"
    write_entities_image(root, "42", captions, objects, (40, 30))
    write_split(root, "train", ["42"])
    (tmp_path / "images").mkdir(exist_ok=True)
    if image:
        Image.new("RGB", (40, 30)).save(tmp_path / "images" / "42.jpg")
    return root


def read(root: Path, policy: str = "error") -> tuple[list, RecordProblems]:
    entry = {"format": "flickr30k_entities", "path": str(root), "image_root": str(root.parent / "images")}
    problems = RecordProblems(policy)
    return read_source(DataConfig(train=[{**entry, "split": "train"}]).train[0], problems), problems


def test_each_caption_grounds_its_boxed_phrases(tmp_path):
    samples, _ = read(release(tmp_path))
    assert [s.id for s in samples] == ["42-0", "42-1", "42-3"]
    assert samples[0].origin.endswith("Sentences/42.txt:1")
    assert samples[0].reference == {
        "query": "Two men kick a ball in the park .",
        "boxes": [[0, 0, 10, 20], [20, 0, 30, 20], [30, 25, 36, 30]],
        "labels": ["Two men", "Two men", "a ball"],
    }
    assert samples[2].reference["labels"] == ["A man in red", "his friends", "his friends"]
    item = SampleDataset(samples)[0]
    assert item["prompt"] == "<CAPTION_TO_PHRASE_GROUNDING>Two men kick a ball in the park ."
    assert parse_output("<CAPTION_TO_PHRASE_GROUNDING>", item["target"], (40, 30))["labels"] == [
        "Two men", "Two men", "a ball"
    ]  # fmt: skip


def test_the_release_boxes_are_one_based_pixel_indices(tmp_path):
    """The writer shifts x1, y1 by one as the release does; the reader shifts them back."""
    samples, _ = read(release(tmp_path, objects=[(["1"], (2, 3, 10, 20)), (["3"], (30, 25, 36, 30))]))
    assert samples[0].reference["boxes"][0] == [2, 3, 10, 20]


def test_bad_captions_annotations_and_images_are_named(tmp_path):
    captions = ["[/EN#1/people Two men] play .", "[/EN#1/people Two men kick .", "[/EN#3/other A ball] flies ."]
    objects = [(["1"], (0, 0, 10, 20)), (["3"], (30, 25, 46, 30))]  # the ball reaches x=46 in a 40 wide image
    root = release(tmp_path, captions, objects)
    samples, problems = read(root, "skip")
    assert [s.id for s in samples] == ["42-0"]
    first, second = problems.found
    assert "Sentences/42.txt:2: a bracket that is not a phrase ([/EN#<id>/<type> words])" in first
    assert "Sentences/42.txt:3: boxes[0] lies outside the 40x30 image" in second


def test_a_captions_file_that_is_not_utf8_is_named(tmp_path):
    root = release(tmp_path)
    (root / "Sentences" / "42.txt").write_bytes(b"[/EN#1/people Two men] in a caf\xe9 .")
    with pytest.raises(DataError, match=r"Sentences/42.txt: not UTF-8 text \(byte 0xe9 at offset 31\)"):
        read(root)


def test_missing_files_are_named(tmp_path):
    root = release(tmp_path, image=False)
    with pytest.raises(DataError, match=r"Sentences/42.txt: image not found: .*images/42.jpg"):
        read(root)
    (root / "Annotations" / "42.xml").write_text("<annotation><size><width>40</width>")
    with pytest.raises(DataError, match=r"Annotations/42.xml: not valid XML"):
        read(root)
    (root / "train.txt").unlink()
    with pytest.raises(DataError, match=r"split list not found: .*train.txt \(the release's train.txt"):
        read(root)


def test_the_source_names_its_split():
    entry = {"format": "flickr30k_entities", "path": "data/flickr30k_entities", "image_root": "x", "split": "val"}
    source = DataConfig(train=[entry]).train[0]
    assert source_name(source) == "flickr30k_entities-val"
    with pytest.raises(ValueError, match="split"):
        DataConfig(train=[{"format": "flickr30k_entities", "path": "d", "image_root": "x", "split": "testA"}])


def test_numbers_that_are_not_finite_are_refused(tmp_path):
    root = release(tmp_path)
    xml = (root / "Annotations" / "42.xml").read_text()
    (root / "Annotations" / "42.xml").write_text(xml.replace("<xmax>10</xmax>", "<xmax>nan</xmax>", 1))
    with pytest.raises(DataError, match=r"Annotations/42.xml: object 0: <xmax> must be a number, got 'nan'"):
        read(root)
