"""JSONL reading: good records become Samples, every kind of bad record gets a precise message."""

from __future__ import annotations

import json
import re

import pytest
from helpers import shape_records

from f2tune.data.formats.jsonl import read_jsonl
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError


def test_reads_records_with_paths_relative_to_the_file(write_jsonl):
    path = write_jsonl(shape_records(3))
    samples = read_jsonl(path, RecordProblems())
    assert [s.target for s in samples] == [r["target"] for r in shape_records(3)]
    assert all(s.image.is_file() and s.image.parent == path.parent / "images" for s in samples)
    assert samples[1].origin == f"{path}:2"


def test_prefix_and_suffix_are_accepted(write_jsonl):
    record = shape_records(1)[0]
    path = write_jsonl([{"image": record["image"], "prefix": "<OD>", "suffix": "circle<loc_1><loc_2><loc_3><loc_4>"}])
    (sample,) = read_jsonl(path, RecordProblems())
    assert (sample.prompt, sample.target) == ("<OD>", "circle<loc_1><loc_2><loc_3><loc_4>")


def test_default_prompt_from_the_source(write_jsonl):
    record = shape_records(1)[0]
    path = write_jsonl([{"image": record["image"], "target": "x"}])
    assert read_jsonl(path, RecordProblems(), default_prompt="<CAPTION>")[0].prompt == "<CAPTION>"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"image": "images/shapes-5-0.png", "prompt": "<CAPTION>", "target": "x"', "not valid JSON"),
        ('["a", "list"]', "expected a JSON object"),
        ('{"image": "images/nope.png", "prompt": "<CAPTION>", "target": "x"}', "image not found: "),
        ('{"prompt": "<CAPTION>", "target": "x"}', "missing field 'image'"),
        ('{"image": "images/shapes-5-0.png", "prompt": "<CAPTION>"}', "missing field 'target' or 'suffix'"),
        ('{"image": "images/shapes-5-0.png", "target": "x"}', "missing field 'prompt' or 'prefix'"),
        (
            '{"image": "images/shapes-5-0.png", "task": "<OD>", "boxes": [[1, 2, 3, 4]], "labels": ["a"]}',
            "missing field 'prompt' or 'prefix' (its boxes, labels, task are structured_jsonl's fields: set `format: "
            "structured_jsonl`)",
        ),
        (
            '{"image": "images/shapes-5-0.png", "prompt": "<CAPTON>", "target": "x"}',
            "unknown task token <CAPTON> (did you mean <CAPTION>?); known task tokens: <CAPTION>",
        ),
        ('{"image": "images/shapes-5-0.png", "prompt": "<OD> cats", "target": "x"}', "takes no input"),
        ('{"image": "images/shapes-5-0.png", "prompt": "<OD> ", "target": "x"}', "but the prompt has spaces around it"),
        ('{"image": "images", "prompt": "<CAPTION>", "target": "x"}', "the image is a folder, not a file: "),
        (
            '{"image": "images/shapes-5-0.png", "prompt": "<CAPTION>", "target": "a cat</s> on a mat"}',
            "the target has </s>, one of the tokenizer's special tokens",
        ),
        (
            '{"image": "images/shapes-5-0.png", "prompt": "<image> what?", "target": "x"}',
            "the prompt has <image>, one of the tokenizer's special tokens",
        ),
        (
            '{"image": "images/shapes-5-0.png", "prompt": "<OD>", "target": "cat<loc_1><loc_2><loc_3><loc_1000>"}',
            "the target has <loc_1000>, which is no location token",
        ),
        (
            '{"image": "images/shapes-5-0.png", "prompt": "<CAPTION>", "target": 3}',
            "field 'target' must be a non-empty string",
        ),
    ],
)
def test_bad_line_names_file_line_and_problem(write_jsonl, line, expected):
    path = write_jsonl([shape_records(1)[0], line])
    with pytest.raises(DataError) as caught:
        read_jsonl(path, RecordProblems())
    assert f"{path}:2: " in str(caught.value)
    assert expected in str(caught.value)
    if "image not found" in expected:
        assert str(path.parent / "images" / "nope.png") in str(caught.value)


def test_skip_policy_keeps_good_records_and_counts_bad_ones(write_jsonl):
    good = shape_records(2)
    path = write_jsonl(
        [good[0], "{broken", good[1], '{"image": "images/gone.png", "prompt": "<CAPTION>", "target": "x"}']
    )
    problems = RecordProblems("skip")
    samples = read_jsonl(path, problems)
    assert len(samples) == 2
    assert len(problems.found) == 2
    summary = problems.summary("train source 'train'")
    assert "skipped 2 bad record(s)" in summary and f"{path}:2" in summary and f"{path}:4" in summary


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="JSONL file not found: .*nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl", RecordProblems())
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="JSONL file is a folder, not a file: .*data"):  # was "not found"
        read_jsonl(tmp_path / "data", RecordProblems())


def test_a_line_that_is_not_utf8_is_that_lines_problem(write_jsonl):
    """Bytes that are not UTF-8 (a Latin-1 caption) used to end the read with a UnicodeDecodeError."""
    good = shape_records(2)
    path = write_jsonl(good)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + b'{"image": "x.png", "target": "caf\xe9"}\n' + lines[1])  # BOM first
    problems = RecordProblems("skip")
    assert [s.target for s in read_jsonl(path, problems)] == [r["target"] for r in good]
    assert problems.found == [
        f"{path}:2: not UTF-8 text (byte 0xe9 at column 34); JSONL files are UTF-8: re-save it as UTF-8"
    ]


def test_a_json_array_over_many_lines_is_named_once_for_the_file(write_jsonl):
    """Not one 'not valid JSON' per line: the file is of another format, which skip cannot mend."""
    records = shape_records(2)
    path = write_jsonl(["[", json.dumps(records[0]) + ",", json.dumps(records[1]), "]"])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: one JSON array over many lines, not JSON Lines"):
        read_jsonl(path, RecordProblems("skip"))
    path.write_text(json.dumps(records))  # an array on one line: one record of the wrong type
    with pytest.raises(DataError, match=":1: expected a JSON object, got list"):
        read_jsonl(path, RecordProblems())
