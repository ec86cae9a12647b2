"""OCR JSONL: quads + labels for <OCR_WITH_REGION>, joined text for <OCR>, bad lines named by file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.dataset import SampleDataset
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError

QUAD = [1, 2, 30, 2, 30, 10, 1, 10]
RECORD = {"image": "images/sign.png", "lines": [{"text": "STOP ", "quad": QUAD}, {"text": "here", "quad": QUAD}]}


def write(tmp_path: Path, records: list) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.new("RGB", (40, 20), (255, 255, 255)).save(tmp_path / "images" / "sign.png")
    path = tmp_path / "ocr.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def read(path: Path, policy: str = "error", **options) -> tuple[list, RecordProblems]:
    problems = RecordProblems(policy)
    entry = {"format": "ocr", "path": str(path), **options}
    return read_source(DataConfig(train=[entry]).train[0], problems), problems


def test_ocr_with_region_keeps_quads_and_labels(tmp_path):
    (sample,), _ = read(write(tmp_path, [RECORD]))
    assert sample.task == "<OCR_WITH_REGION>" and (sample.prompt, sample.target) == ("", "")
    assert sample.reference == {"quads": [[float(v) for v in QUAD]] * 2, "labels": ["STOP", "here"]}
    assert sample.image == tmp_path / "images" / "sign.png"
    assert sample.origin.endswith("ocr.jsonl:1")


def test_ocr_joins_lines_without_separator_like_pretrained_florence2(tmp_path):
    path = write(tmp_path, [RECORD, {"image": "images/sign.png", "lines": []}])
    samples, _ = read(path, task="<OCR>")
    assert [s.reference for s in samples] == [{"text": "STOPhere"}, {"text": ""}]
    assert read(path, task="<OCR>", line_separator="\n")[0][0].reference == {"text": "STOP\nhere"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"image": "images/sign.png"}, "missing field 'lines'"),
        ({"image": "images/sign.png", "lines": "STOP"}, "'lines' must be a list"),
        ({"image": "images/sign.png", "lines": [{"text": "x"}]}, "lines[0] must be an object with 'text' and 'quad'"),
        (
            {"image": "images/sign.png", "lines": [{"text": "x", "quad": [1, 2, 3]}]},
            "lines[0].quad must have 8 numbers",
        ),
        (
            {"image": "images/sign.png", "lines": [{"text": "", "quad": QUAD}]},
            "lines[0].text must be a non-empty string",
        ),
        ({"image": "images/gone.png", "lines": []}, "image not found: "),
        ({"lines": []}, "missing field 'image'"),
        ("{broken", "not valid JSON"),
    ],
)
def test_bad_lines_name_file_line_and_problem(tmp_path, record, expected):
    path = write(tmp_path, [RECORD, record])
    with pytest.raises(DataError) as caught:
        read(path)
    assert f"{path}:2: " in str(caught.value) and expected in str(caught.value)
    if expected == "image not found: ":
        assert str(tmp_path / "images" / "gone.png") in str(caught.value)


def test_a_label_its_parser_cannot_read_back_is_named_when_read(tmp_path):
    """Found when the data is read, not when the sample is first loaded mid-epoch."""
    path = write(tmp_path, [RECORD, {"image": "images/sign.png", "lines": [{"text": "TWO\nLINES", "quad": QUAD}]}])
    with pytest.raises(DataError, match=rf"{path}:2: <OCR_WITH_REGION>: label 'TWO\\nLINES' contains"):
        read(path)


def test_an_image_without_text_trains_to_answer_nothing(tmp_path):
    """The documented empty `<OCR>` sample was refused when loaded ('text' must be non-empty)."""
    path = write(tmp_path, [{"image": "images/sign.png", "lines": []}])
    samples, _ = read(path, task="<OCR>")
    item = SampleDataset(samples)[0]
    assert (item["prompt"], item["target"]) == ("<OCR>", "")


def test_skip_counts_bad_lines(tmp_path):
    samples, problems = read(write(tmp_path, ["[1]", RECORD, {"image": "images/sign.png"}]), policy="skip")
    assert len(samples) == 1 and len(problems.found) == 2
