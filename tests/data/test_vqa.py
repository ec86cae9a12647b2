"""VQA JSONL: free-text samples whose query is the question and whose text is the most common answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.formats import read_source
from f2tune.data.formats.vqa import most_common
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError

RECORD = {"id": 5, "image": "docs/page.png", "question": "What is the total?", "answers": ["$10", "10", "$10"]}


def write(tmp_path: Path, records: list) -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    Image.new("RGB", (20, 30), (250, 250, 250)).save(tmp_path / "docs" / "page.png")
    path = tmp_path / "vqa.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def read(path: Path, policy: str = "error") -> tuple[list, RecordProblems]:
    problems = RecordProblems(policy)
    return read_source(DataConfig(train=[{"format": "vqa", "path": str(path)}]).train[0], problems), problems


def test_question_and_answers_become_a_free_text_reference(tmp_path):
    (sample,), _ = read(write(tmp_path, [RECORD]))
    assert (sample.id, sample.task, sample.prompt, sample.target) == ("5", "", "", "")
    assert sample.reference == {"query": "What is the total?", "text": "$10", "answers": ["$10", "10", "$10"]}
    assert sample.image == tmp_path / "docs" / "page.png"


def test_most_common_answer_ties_go_to_the_first():
    assert most_common(["yes", "no", "no", "yes"]) == "yes"
    assert most_common(["2", "two", "two"]) == "two"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({**RECORD, "answers": []}, "'answers' must be a non-empty list"),
        ({**RECORD, "answers": "yes"}, "'answers' must be a non-empty list"),
        ({**RECORD, "answers": ["ok", 3]}, "'answers' must be a non-empty list"),
        ({k: v for k, v in RECORD.items() if k != "question"}, "missing field 'question'"),
        ({**RECORD, "question": "<OD>"}, "must not start with a task token"),
        ({**RECORD, "image": "docs/none.png"}, "image not found: "),
    ],
)
def test_bad_lines_are_named(tmp_path, record, expected):
    path = write(tmp_path, [record])
    with pytest.raises(DataError) as caught:
        read(path)
    assert f"{path}:1: " in str(caught.value) and expected in str(caught.value)


def test_skip_counts_bad_lines(tmp_path):
    samples, problems = read(write(tmp_path, [RECORD, {**RECORD, "answers": []}]), policy="skip")
    assert len(samples) == 1 and len(problems.found) == 1
