"""COCO detection: boxes converted to corners, crowds left out of targets, every malformed-file case named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.formats import read_source, source_name
from f2tune.data.formats.coco import read_coco_detection
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError
from f2tune.tasks import format_target

COCO = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 32, "height": 32},
        {"id": 3, "file_name": "c.png", "width": 32, "height": 32},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 6, 10, 20], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [30, 10, 20, 30], "iscrowd": 0},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1},
        {"id": 13, "image_id": 2, "category_id": 2, "bbox": [0, 0, 32, 32]},
    ],
}


def write_coco(tmp_path: Path, data: dict, images: tuple[str, ...] = ("a.png", "b.png", "c.png")) -> Path:
    """The JSON in tmp_path/annotations, tiny PNGs (sizes as listed) in tmp_path/images."""
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    sizes = {e.get("file_name"): (e.get("width", 8), e.get("height", 8)) for e in COCO["images"]}
    for name in images:
        Image.new("RGB", sizes.get(name, (8, 8)), (120, 90, 60)).save(tmp_path / "images" / name)
    path = tmp_path / "annotations" / "instances.json"
    path.write_text(json.dumps(data))
    return path


def source(path: Path, task: str = "<OD>") -> dict:
    return {
        "format": "coco_detection",
        "path": str(path),
        "image_root": str(path.parent.parent / "images"),
        "task": task,
    }


def read(path: Path, task: str = "<OD>", policy: str = "error") -> tuple[list, RecordProblems]:
    problems = RecordProblems(policy)
    config = DataConfig(train=[source(path, task)])
    return read_coco_detection(config.train[0], problems), problems


def test_one_od_sample_per_image_with_corner_boxes_and_crowds_kept_apart(tmp_path):
    """Crowds are not trained on, and stay in the reference as COCO mAP's ignore regions."""
    path = write_coco(tmp_path, COCO)
    samples, _ = read(path)
    assert [s.id for s in samples] == ["1", "2"]  # image 3 has no annotation
    first = samples[0]
    assert first.task == "<OD>" and first.prompt == "" and first.target == ""
    assert first.reference == {"boxes": [[4.0, 6.0, 14.0, 26.0], [30.0, 10.0, 50.0, 40.0]], "labels": ["cat", "dog"]}
    assert first.image == tmp_path / "images" / "a.png"
    assert first.origin == f"{path}:image 1"
    crowd = {"crowd_boxes": [[1.0, 1.0, 6.0, 6.0]], "crowd_labels": ["cat"]}
    assert samples[1].reference == {"boxes": [[0.0, 0.0, 32.0, 32.0]], "labels": ["dog"], **crowd}
    assert format_target("<OD>", samples[1].reference, (32, 32)) == "dog<loc_0><loc_0><loc_999><loc_999>"


def test_dense_region_caption_uses_category_names(tmp_path):
    samples, _ = read(write_coco(tmp_path, COCO), "<DENSE_REGION_CAPTION>")
    assert [s.task for s in samples] == ["<DENSE_REGION_CAPTION>"] * 2
    assert samples[0].reference["labels"] == ["cat", "dog"]


def test_region_to_category_gives_one_sample_per_object(tmp_path):
    samples, _ = read(write_coco(tmp_path, COCO), "<REGION_TO_CATEGORY>")
    assert [(s.id, s.reference["text"]) for s in samples] == [("1-10", "cat"), ("1-11", "dog"), ("2-13", "dog")]
    assert samples[1].reference["region"] == [30.0, 10.0, 50.0, 40.0]
    assert "boxes" not in samples[1].reference


def test_dispatch_and_name_through_the_recipe_schema(tmp_path):
    path = write_coco(tmp_path, COCO)
    config = DataConfig(train=[source(path)])
    assert len(read_source(config.train[0], RecordProblems())) == 2
    assert source_name(config.train[0]) == "instances"


@pytest.mark.parametrize(
    ("split", "policy", "ids"),
    [("train", "auto", ["1", "2"]), ("val", "auto", ["1", "2", "3"]), ("test", "auto", ["1", "2", "3"]),
     ("train", "keep", ["1", "2", "3"]), ("val", "skip", ["1", "2"])],
)  # fmt: skip
def test_images_without_objects_are_evaluated_and_not_trained_unless_told(tmp_path, split, policy, ids):
    """Left out of validation, a box predicted on an object-free image was never counted as the false
    detection COCO's evaluation counts (image 3 has no annotation, image 2 one object and a crowd)."""
    entry = {**source(write_coco(tmp_path, COCO)), "images_without_objects": policy}
    samples = read_source(DataConfig(train=[entry]).train[0], RecordProblems(), split)
    assert [s.id for s in samples] == ids
    if "3" in ids:
        assert samples[2].reference == {"boxes": [], "labels": []}
        assert format_target("<OD>", samples[2].reference, (32, 32)) == ""


def test_objects_keep_their_area_for_cocos_size_ranges(tmp_path):
    data = copy.deepcopy(COCO)
    data["annotations"][0]["area"] = 150.5
    data["annotations"][2]["area"] = 20  # the crowd's
    samples, _ = read(write_coco(tmp_path, data))
    assert (samples[0].reference["areas"], samples[1].reference["areas"]) == ([150.5, 0.0], [0.0])
    assert samples[1].reference["crowd_areas"] == [20.0]


def broken(change) -> dict:
    data = copy.deepcopy(COCO)
    change(data)
    return data


def _set(target: dict, key: str, value) -> None:
    target[key] = value


BAD = [
    (lambda d: d.pop("categories"), "missing top-level key(s) categories"),
    (lambda d: _set(d["annotations"][1], "category_id", 7), "annotation 11: category_id 7 is not in 'categories'"),
    (
        lambda d: _set(d["annotations"][0], "bbox", [4, 6, -3, 20]),
        "annotation 10: bbox width and height must be positive",
    ),
    (
        lambda d: _set(d["annotations"][1], "bbox", [30, 10, 40, 30]),
        "annotation 11: bbox [30, 10, 40, 30] lies outside",
    ),
    (  # past the right edge by less than the tolerance: clipped, it was an inverted box failing mid-epoch
        lambda d: _set(d["annotations"][1], "bbox", [64.3, 10, 0.5, 5]),
        "annotation 11: bbox [64.3, 10, 0.5, 5] has no area inside its image 1 (64x48)",
    ),
    (lambda d: _set(d["annotations"][3], "image_id", 99), "annotation 13: image_id 99 is not listed in 'images'"),
    (lambda d: d["annotations"][0].pop("bbox"), "annotation 10: missing key(s) bbox"),
    (lambda d: d["annotations"][0].pop("id"), "annotations[0]: missing key(s) id"),
    (lambda d: _set(d["annotations"][0], "bbox", [1, 2, 3]), "annotation 10: 'bbox' must be 4 numbers"),
    (lambda d: _set(d["images"][0], "width", -64), "image 1: width and height must be positive"),
    (lambda d: d["images"][1].pop("file_name"), "image 2: missing 'file_name'"),
    (lambda d: d["categories"][0].pop("name"), "category 1: missing 'name'"),
    (lambda d: _set(d["annotations"][0], "iscrowd", "0"), "annotation 10: 'iscrowd' must be 0 or 1, got '0'"),
    (lambda d: d["categories"].append({"id": 1, "name": "hat"}), "category 1: category id listed twice"),
    (
        lambda d: _set(d["annotations"][0], "bbox", [10**400, 6, 10, 20]),
        "annotation 10: 'bbox' must be 4 numbers x, y, width, height",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BAD)
def test_malformed_coco_names_the_file_and_the_offending_id(tmp_path, change, expected):
    path = write_coco(tmp_path, broken(change))
    with pytest.raises(DataError) as caught:
        read(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_not_json_and_missing_file(tmp_path):
    path = write_coco(tmp_path, COCO)
    path.write_text("{oops")
    with pytest.raises(DataError, match="instances.json: not valid JSON"):
        read(path)
    path.write_bytes(b'{"images": ["caf\xe9"]}')
    with pytest.raises(DataError, match=r"instances.json: not UTF-8 text \(byte 0xe9 at offset 16\)"):
        read(path)
    with pytest.raises(DataError, match="COCO annotation file not found: .*nope.json"):
        read(tmp_path / "nope.json")


def test_missing_image_file_names_its_path(tmp_path):
    path = write_coco(tmp_path, COCO, images=("a.png",))
    with pytest.raises(DataError) as caught:
        read(path)
    assert f"image 2: image not found: {tmp_path / 'images' / 'b.png'}" in str(caught.value)


def test_a_file_of_crowds_only_says_why_it_is_empty(tmp_path):
    data = json.loads(json.dumps(COCO))
    for ann in data["annotations"]:
        ann["iscrowd"] = 1
    with pytest.raises(
        DataError, match=r"the dataset is empty: none of its 3 image\(s\) has an object that is not a crowd"
    ):
        read(write_coco(tmp_path, data))


def test_a_folder_named_as_an_image_is_called_a_folder(tmp_path):
    path = write_coco(tmp_path, COCO, images=("a.png",))
    (tmp_path / "images" / "b.png").mkdir()
    with pytest.raises(DataError, match="image 2: the image is a folder, not a file: .*b.png"):
        read(path)


def test_error_lists_the_first_offending_ids_at_once(tmp_path):
    def change(d: dict) -> None:
        d["annotations"][0]["category_id"] = 8
        d["annotations"][3]["category_id"] = 9

    with pytest.raises(DataError) as caught:
        read(write_coco(tmp_path, broken(change)))
    message = str(caught.value)
    assert "2 bad record(s)" in message and "annotation 10" in message and "annotation 13" in message
    assert "on_bad_record: skip" in message


def test_skip_counts_bad_records_and_drops_their_images(tmp_path):
    def change(d: dict) -> None:
        d["annotations"][1]["category_id"] = 7  # image 1 loses a box: the whole image goes
        d["annotations"].append({"id": 14, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1]})

    samples, problems = read(write_coco(tmp_path, broken(change)), policy="skip")
    assert [s.id for s in samples] == ["2"]
    assert len(problems.found) == 2
    assert "annotation 11" in problems.found[0] and "image_id 42" in problems.found[1]


def test_boxes_a_rounding_error_outside_are_clipped(tmp_path):
    samples, _ = read(write_coco(tmp_path, broken(lambda d: _set(d["annotations"][3], "bbox", [-0.4, 0, 32.5, 32]))))
    assert samples[1].reference["boxes"] == [[0.0, 0.0, 32.0, 32.0]]
