"""RefCOCO: one sample per sentence of the chosen split, boxes or polygons (RLE traced), bad refs named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from f2tune.config import DataConfig
from f2tune.data.formats import read_source, source_name
from f2tune.data.formats.refcoco import mask_polygons
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError


def square_rle() -> dict:
    mask = np.zeros((32, 32), dtype=np.uint8, order="F")
    mask[4:12, 8:20] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


INSTANCES = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 32, "height": 32},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 6, 10, 20], "segmentation": [[4, 6, 14, 6, 14, 26]]},
        {"id": 13, "image_id": 2, "category_id": 2, "bbox": [8, 4, 12, 8], "segmentation": square_rle()},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}
REFS = [
    {
        "ref_id": 100,
        "ann_id": 10,
        "image_id": 1,
        "split": "train",
        "sentences": [{"sent": "left cat"}, {"sent": "the cat"}],
    },
    {"ref_id": 101, "ann_id": 13, "image_id": 2, "split": "val", "sentences": [{"sent": "dog on the right"}]},
]


def write(tmp_path: Path, instances: dict = INSTANCES, refs: list = REFS) -> tuple[Path, Path]:
    (tmp_path / "train2014").mkdir(exist_ok=True)
    for entry in INSTANCES["images"]:
        Image.new("RGB", (entry["width"], entry["height"]), (40, 80, 120)).save(
            tmp_path / "train2014" / entry["file_name"]
        )
    path, refs_path = tmp_path / "instances.json", tmp_path / "refs_unc.json"
    path.write_text(json.dumps(instances))
    refs_path.write_text(json.dumps(refs))
    return path, refs_path


def read(path: Path, refs: Path, policy: str = "error", **options) -> tuple[list, RecordProblems]:
    config = DataConfig(
        train=[
            {
                "format": "refcoco",
                "path": str(path),
                "refs": str(refs),
                "image_root": str(path.parent / "train2014"),
                **options,
            }
        ]
    )
    problems = RecordProblems(policy)
    return read_source(config.train[0], problems), problems


def test_open_vocabulary_detection_one_sample_per_sentence_of_the_split(tmp_path):
    samples, _ = read(*write(tmp_path), split="train")
    assert [s.id for s in samples] == ["100-0", "100-1"]
    first = samples[0]
    assert first.task == "<OPEN_VOCABULARY_DETECTION>" and (first.prompt, first.target) == ("", "")
    assert first.reference == {"query": "left cat", "boxes": [[4.0, 6.0, 14.0, 26.0]], "labels": ["left cat"]}
    assert first.image == tmp_path / "train2014" / "a.png"
    assert len(read(*write(tmp_path))[0]) == 3  # no split: every ref


def test_grounding_task(tmp_path):
    samples, _ = read(*write(tmp_path), split="val", task="<CAPTION_TO_PHRASE_GROUNDING>")
    assert [(s.task, s.reference["query"], s.reference["labels"]) for s in samples] == [
        ("<CAPTION_TO_PHRASE_GROUNDING>", "dog on the right", ["dog on the right"])
    ]


def test_segmentation_polygons_directly_and_from_rle(tmp_path):
    samples, _ = read(*write(tmp_path), task="<REFERRING_EXPRESSION_SEGMENTATION>")
    assert samples[0].reference == {"query": "left cat", "polygons": [[4.0, 6.0, 14.0, 6.0, 14.0, 26.0]]}
    # the RLE square covers x 8..19, y 4..11: its outline through pixel centres
    assert samples[2].reference["polygons"] == [[8.5, 4.5, 19.5, 4.5, 19.5, 11.5, 8.5, 11.5]]


@pytest.mark.parametrize(
    ("segmentation", "problem"),
    [
        ({"counts": "garbage!!", "size": [32, 32]}, "the RLE segmentation cannot be decoded"),
        ({"counts": [5, -3], "size": [32, 32]}, "the RLE segmentation cannot be decoded"),
        ({"counts": "PPYo0", "size": [32]}, r"an RLE segmentation's 'size' is \[height, width\] in pixels, got \[32\]"),
        ({**square_rle(), "size": [16, 64]}, r"the RLE segmentation is 64x16 .* its image 32x32"),
    ],
)
def test_a_bad_rle_mask_is_named_with_its_annotation(tmp_path, segmentation, problem):
    """pycocotools' own errors came as a traceback, even with on_bad_record: skip; a mask of
    another size was traced and trained where it does not lie."""
    instances, refs = write(tmp_path)
    data = json.loads(instances.read_text())
    data["annotations"][1]["segmentation"] = segmentation
    instances.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"annotation 13: {problem}"):
        read(instances, refs, task="<REFERRING_EXPRESSION_SEGMENTATION>")


def test_mask_tracing_keeps_each_part_and_concave_outlines():
    mask = np.zeros((12, 16), dtype=np.uint8)
    mask[2:10, 2:10] = 1
    mask[2:7, 5:7] = 0  # a notch from the top: a U
    mask[3:5, 12:15] = 1  # a second part
    polygons = mask_polygons(mask)
    assert len(polygons) == 2
    assert polygons[1] == [12.5, 3.5, 14.5, 3.5, 14.5, 4.5, 12.5, 4.5]
    xs, ys = polygons[0][0::2], polygons[0][1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (2.5, 9.5, 2.5, 9.5)
    assert (5.5, 7.5) in list(zip(xs, ys))  # the bottom of the notch is on the outline


def test_name_defaults_to_refs_file_and_split(tmp_path):
    path, refs = write(tmp_path)
    config = DataConfig(
        train=[{"format": "refcoco", "path": str(path), "refs": str(refs), "image_root": ".", "split": "val"}]
    )
    assert source_name(config.train[0]) == "refs_unc-val"


def _ref(change) -> list:
    refs = copy.deepcopy(REFS)
    change(refs)
    return refs


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        (_ref(lambda r: r[0].update(ann_id=77)), "ref 100: ann_id 77 is not in"),
        (_ref(lambda r: r[0].pop("sentences")), "ref 100: missing key(s) sentences"),
        (_ref(lambda r: r[0].update(sentences=[])), "ref 100: 'sentences' must be a non-empty list"),
        (_ref(lambda r: r[0].update(sentences=[{"sent": " "}])), "ref 100: every sentence needs a non-empty 'sent'"),
        (_ref(lambda r: r[1].update(image_id=1)), "ref 101: image_id 1 differs from its annotation's 2"),
        (_ref(lambda r: r.append("x")), "refs[2]: expected an object"),
    ],
)
def test_bad_refs_are_named(tmp_path, refs, expected):
    path, refs_path = write(tmp_path, refs=refs)
    with pytest.raises(DataError) as caught:
        read(path, refs_path)
    assert f"{refs_path}:" in str(caught.value) and expected in str(caught.value)


def test_bad_annotation_behind_a_ref_is_named(tmp_path):
    instances = copy.deepcopy(INSTANCES)
    instances["annotations"][0]["bbox"] = [4, 6, 100, 20]
    with pytest.raises(DataError, match=r"instances.json:annotation 10: bbox .* lies outside"):
        read(*write(tmp_path, instances=instances))
    instances["annotations"][0]["bbox"] = [4, 6, 10, 20]
    instances["annotations"][0]["segmentation"] = [[1, 2, 3]]
    with pytest.raises(DataError, match="annotation 10: segmentation polygons need an even count"):
        read(*write(tmp_path, instances=instances), task="<REFERRING_EXPRESSION_SEGMENTATION>")


def test_missing_image_and_skip_policy(tmp_path):
    path, refs = write(tmp_path)
    (tmp_path / "train2014" / "b.png").unlink()
    with pytest.raises(DataError, match=f"ref 101: image not found: {tmp_path / 'train2014' / 'b.png'}"):
        read(path, refs)
    samples, problems = read(path, refs, policy="skip")
    assert [s.id for s in samples] == ["100-0", "100-1"] and len(problems.found) == 1


def test_refs_must_be_json_not_a_pickle(tmp_path):
    path, _ = write(tmp_path)
    pickle_path = tmp_path / "refs(unc).p"
    pickle_path.write_bytes(b"\x80\x04")
    with pytest.raises(DataError, match=r"refs must be JSON, not a pickle; convert it once"):
        read(path, pickle_path)
    with pytest.raises(DataError, match="refs file not found"):
        read(path, tmp_path / "none.json")


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"refs_unc.json \(split testB\): the dataset is empty"):
        read(*write(tmp_path), split="testB")
