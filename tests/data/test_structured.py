"""Structured JSONL: answers in pixels become references; every malformed shape is named by file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError

OD = {"image": "img.png", "task": "<OD>", "boxes": [[1, 2, 10, 12], [5, 5, 20, 20]], "labels": ["cat", "dog"]}


def write(tmp_path: Path, records: list) -> Path:
    Image.new("RGB", (32, 24)).save(tmp_path / "img.png")
    path = tmp_path / "structured.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def read(path: Path, policy: str = "error") -> tuple[list, RecordProblems]:
    problems = RecordProblems(policy)
    entry = {"format": "structured_jsonl", "path": str(path)}
    return read_source(DataConfig(train=[entry]).train[0], problems), problems


def test_every_kind_of_answer(tmp_path):
    records = [
        OD,
        {"image": "img.png", "task": "<OCR_WITH_REGION>", "quads": [[0, 0, 9, 0, 9, 5, 0, 5]], "labels": ["hi"]},
        {
            "image": "img.png",
            "task": "<REFERRING_EXPRESSION_SEGMENTATION>",
            "query": "the cat",
            "polygons": [[1, 1, 9, 1, 5, 8]],
        },
        {"image": "img.png", "task": "<REGION_TO_CATEGORY>", "region": [1, 2, 10, 12], "text": "cat"},
        {
            "image": "img.png",
            "task": "<OPEN_VOCABULARY_DETECTION>",
            "query": "cat",
            "boxes": [[1, 2, 3, 4]],
            "labels": ["cat"],
        },
        {"id": "q1", "image": "img.png", "task": "", "query": "How many?", "text": "2", "answers": ["2", "two"]},
        {"image": "img.png", "task": "<REGION_PROPOSAL>", "boxes": [[0, 0, 32, 24]], "width": 32, "height": 24},
    ]
    samples, _ = read(write(tmp_path, records))
    assert [s.task for s in samples] == [r["task"] for r in records]
    assert samples[0].reference == {"boxes": [[1.0, 2.0, 10.0, 12.0], [5.0, 5.0, 20.0, 20.0]], "labels": ["cat", "dog"]}
    assert samples[1].reference["quads"] == [[0.0, 0.0, 9.0, 0.0, 9.0, 5.0, 0.0, 5.0]]
    assert samples[2].reference == {"query": "the cat", "polygons": [[1.0, 1.0, 9.0, 1.0, 5.0, 8.0]]}
    assert samples[3].reference == {"region": [1.0, 2.0, 10.0, 12.0], "text": "cat"}
    assert samples[5].id == "q1" and samples[5].reference["answers"] == ["2", "two"]
    assert all((s.prompt, s.target) == ("", "") for s in samples)
    assert samples[0].image == tmp_path / "img.png" and samples[0].origin.endswith("structured.jsonl:1")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({**OD, "boxes": [[1, 2, 10]], "labels": ["cat"]}, "boxes[0] must have 4 numbers"),
        ({**OD, "boxes": [[10, 2, 1, 12]], "labels": ["cat"]}, "boxes[0] must be x1, y1, x2, y2 with x2 > x1"),
        ({**OD, "boxes": [[1, 12, 10, 2]], "labels": ["cat"]}, "with x2 > x1 and y2 > y1"),
        ({**OD, "boxes": [["a", 2, 10, 12]], "labels": ["cat"]}, "boxes[0] must be a list of numbers"),
        ({**OD, "labels": ["cat"]}, "1 labels for 2 boxes"),
        ({**OD, "labels": ["cat", ""]}, "'labels' must be a list of non-empty strings"),
        ({"image": "img.png", "task": "<OD>", "labels": ["cat"], "text": "x"}, "'labels' name boxes or quads"),
        (
            {"image": "img.png", "task": "<OCR_WITH_REGION>", "quads": [[0, 0, 9, 0]], "labels": ["a"]},
            "quads[0] must have 8 numbers",
        ),
        (
            {"image": "img.png", "task": "<REFERRING_EXPRESSION_SEGMENTATION>", "polygons": [[1, 1, 9, 1]]},
            "at least 3 points",
        ),
        (
            {"image": "img.png", "task": "<REFERRING_EXPRESSION_SEGMENTATION>", "polygons": [[1, 1, 9, 1, 5, 8, 2]]},
            "flat x, y pairs",
        ),
        (
            {"image": "img.png", "task": "<REFERRING_EXPRESSION_SEGMENTATION>", "polygons": [1, 1, 9, 1, 5, 8]},
            "wrap a single flat",
        ),
        (
            {"image": "img.png", "task": "<REGION_TO_CATEGORY>", "region": [1, 2, 3], "text": "cat"},
            "region must have 4 numbers",
        ),
        ({**OD, "task": "<DETECT>"}, "'task' must be a Florence-2 task token"),
        ({k: v for k, v in OD.items() if k != "task"}, "missing field 'task'"),
        ({**OD, "bbox": [1, 2, 3, 4]}, "unknown field(s) bbox"),
        ({"image": "img.png", "task": "<OD>"}, "no answer: give one of"),
        ({**OD, "width": 32}, "'width' and 'height' must both be positive"),
        ({**OD, "width": 15, "height": 24}, "boxes[1] lies outside the 15x24 image"),
        (
            {"image": "img.png", "task": "<REGION_TO_CATEGORY>", "region": [-5, 2, 10, 12], "text": "cat"},
            "region lies outside the image (negative coordinates): [-5.0, 2.0, 10.0, 12.0]",
        ),
        ({**OD, "image": "missing.png"}, "image not found: "),
        # what the task needs, found when read rather than when its batch is made
        ({"image": "img.png", "task": "<OD>", "boxes": [[1, 2, 9, 9]]}, "<OD> needs the annotation field 'labels'"),
        (
            {"image": "img.png", "task": "<CAPTION_TO_PHRASE_GROUNDING>", "boxes": [[1, 2, 9, 9]], "labels": ["a"]},
            "<CAPTION_TO_PHRASE_GROUNDING> needs the annotation field 'query'",
        ),
        ({**OD, "labels": ["a<b", "c"]}, "label 'a<b' contains '<'"),
    ],
)
def test_bad_records_name_file_line_and_problem(tmp_path, record, expected):
    path = write(tmp_path, [OD, record])
    with pytest.raises(DataError) as caught:
        read(path)
    assert f"{path}:2: " in str(caught.value) and expected in str(caught.value)
    if expected == "image not found: ":
        assert str(tmp_path / "missing.png") in str(caught.value)


def test_skip_counts_bad_records(tmp_path):
    samples, problems = read(write(tmp_path, [OD, "{bad", {**OD, "labels": []}, OD]), policy="skip")
    assert len(samples) == 2 and len(problems.found) == 2
    assert "structured.jsonl:2" in problems.found[0] and "structured.jsonl:3" in problems.found[1]
