"""Random and malformed records into every dataset reader: only `F2TuneError`s may escape (a bad
record is reported, never a raw KeyError / IndexError / TypeError / ZeroDivisionError)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f2tune.config import (
    CocoCaptionsSource,
    CocoDetectionSource,
    Flickr30kEntitiesSource,
    JsonlSource,
    KarpathyCaptionsSource,
    OcrSource,
    RefCocoSource,
    StructuredJsonlSource,
    VqaSource,
)
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.errors import F2TuneError
from f2tune.tasks import TASKS, parse_output
from f2tune.testing.shapes import shape_samples

KEYS = [
    "image", "prompt", "prefix", "target", "suffix", "task", "boxes", "polygons", "quads", "labels", "query",
    "region", "text", "lines", "quad", "question", "answers", "id", "image_id", "file_name", "width", "height",
    "bbox", "category_id", "iscrowd", "caption", "name", "ann_id", "ref_id", "split", "sentences", "sent",
    "segmentation", "images", "annotations", "categories",
]  # fmt: skip
IMAGE = "images/img.png"
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", IMAGE, "<OD>", "<CAPTION>", "<OCR_WITH_REGION>", "cat", "nope.png", "<loc_5>"]),
    st.text(max_size=8),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=9) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=30,
)
records = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
lines = st.lists(st.one_of(records.map(json.dumps), values.map(json.dumps), st.text(max_size=20)), max_size=4)
# F2TUNE_FUZZ_EXAMPLES=2000 for a long hunt before touching a reader; 40 keeps the default run fast.
FUZZ = settings(
    max_examples=int(os.environ.get("F2TUNE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder per example (hypothesis runs many examples in one test call) with one image."""
    with tempfile.TemporaryDirectory(prefix="f2tune-fuzz-") as name:
        root = Path(name)
        (root / "images").mkdir()
        shape_samples(1, seed=0)[0].image.render().save(root / IMAGE)
        yield root


def read_quietly(source) -> None:
    try:
        read_source(source, RecordProblems("skip"))
    except F2TuneError:
        pass


@pytest.mark.parametrize("kind", [JsonlSource, OcrSource, VqaSource, StructuredJsonlSource])
@FUZZ
@given(content=lines)
def test_line_readers_report_or_read_any_line(kind, content):
    with folder() as root:
        (root / "data.jsonl").write_text("\n".join(content) + "\n")
        read_quietly(kind(format=kind.model_fields["format"].annotation.__args__[0], path=str(root / "data.jsonl")))


def ids(largest: int) -> st.SearchStrategy:
    """Mostly ids that match other records, sometimes anything (a list id must not break dict lookups)."""
    return st.one_of(st.integers(0, largest), st.integers(0, largest), values)


coco_images = st.lists(
    st.one_of(st.fixed_dictionaries({"id": ids(3), "file_name": st.just(IMAGE), "width": values,
                                     "height": values}), values),
    max_size=3,
)  # fmt: skip
coco_annotations = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"id": ids(5), "image_id": ids(3), "category_id": ids(3),
             "bbox": values, "iscrowd": values, "caption": values, "segmentation": values}
        ),
        values,
    ),
    max_size=4,
)  # fmt: skip
coco_files = st.one_of(
    st.fixed_dictionaries(
        {"images": coco_images, "annotations": coco_annotations,
         "categories": st.lists(st.one_of(st.fixed_dictionaries({"id": ids(3), "name": values}), values),
                                max_size=3)}
    ),
    values,
)  # fmt: skip
refs_files = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"ref_id": values, "ann_id": ids(5), "image_id": ids(3),
                                   "split": st.sampled_from(["train", "val"]), "sentences": values}),
            values,
        ),
        max_size=3,
    ),
    values,
)  # fmt: skip


@FUZZ
@given(coco=coco_files, refs=refs_files)
def test_coco_readers_report_or_read_any_file(coco, refs):
    with folder() as root:
        (root / "coco.json").write_text(json.dumps(coco))
        (root / "refs.json").write_text(json.dumps(refs))
        common = {"path": str(root / "coco.json"), "image_root": str(root)}
        read_quietly(CocoDetectionSource(format="coco_detection", **common))
        read_quietly(CocoCaptionsSource(format="coco_captions", **common))
        read_quietly(RefCocoSource(format="refcoco", refs=str(root / "refs.json"), **common))


karpathy_files = st.one_of(
    st.fixed_dictionaries(
        {"images": st.lists(
            st.one_of(
                st.fixed_dictionaries({"filepath": st.one_of(st.just("images"), values),
                                       "filename": st.one_of(st.just("img.png"), values),
                                       "split": st.sampled_from(["train", "val", None]), "cocoid": ids(3),
                                       "sentences": st.lists(st.one_of(st.fixed_dictionaries({"raw": values}),
                                                                       values), max_size=3)}),
                values,
            ),
            max_size=3,
        )}
    ),
    values,
)  # fmt: skip


@FUZZ
@given(data=karpathy_files)
def test_karpathy_reader_reports_or_reads_any_file(data):
    with folder() as root:
        (root / "dataset.json").write_text(json.dumps(data))
        source = {"path": str(root / "dataset.json"), "image_root": str(root), "splits": ["train", "val"]}
        read_quietly(KarpathyCaptionsSource(format="karpathy_captions", **source))


caption_text = st.lists(
    st.sampled_from(["[/EN#1/people", "[/EN#2/other/scene", "[/EN#x", "A man", "]", "[", "/", " ", ".", "\u00e9"]),
    max_size=12,
).map(" ".join)
xml_number = st.one_of(st.integers(-5, 60).map(str), st.sampled_from(["", "nan", "inf", "1e9", "x", "&amp;", "<"]))


@FUZZ
@given(
    captions=st.lists(caption_text, max_size=4),
    boxes=st.lists(
        st.tuples(st.sampled_from(["1", "2", ""]), st.lists(xml_number, min_size=4, max_size=4)), max_size=3
    ),
    size=st.tuples(xml_number, xml_number),
)  # fmt: skip
def test_flickr_entities_reader_reports_or_reads_any_release(captions, boxes, size):
    with folder() as root:
        (root / "Sentences").mkdir()
        (root / "Annotations").mkdir()
        (root / "Sentences" / "7.txt").write_text("\n".join(captions))
        objects = "".join(
            f"<object><name>{name}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
            "</bndbox></object>"
            for name, (a, b, c, d) in boxes
        )
        size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
        (root / "Annotations" / "7.xml").write_text(f"<annotation>{size_xml}{objects}</annotation>")
        (root / "train.txt").write_text("7\n")
        shape_samples(1, seed=0)[0].image.render().save(root / "images" / "7.jpg")
        source = {"path": str(root), "image_root": str(root / "images"), "split": "train"}
        read_quietly(Flickr30kEntitiesSource(format="flickr30k_entities", **source))


@FUZZ
@given(
    task=st.sampled_from(sorted(TASKS)),
    text=st.lists(st.sampled_from(["<loc_0>", "<loc_999>", "<loc_12345>", "<poly>", "</poly>", "<sep>", "</s>",
                                   "<pad>", "cat", "\n", "<", ">", "loc_"]), max_size=40).map("".join),
    size=st.tuples(st.integers(0, 2000), st.integers(0, 2000)),
)  # fmt: skip
def test_output_parsers_take_any_text_and_any_image_size(task, text, size):
    parse_output(task, text, size)


cells = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["<OD>", "<CAPTON>", "<OCR> x", "", "a cat"]))


@FUZZ
@given(rows=st.lists(st.tuples(cells, cells, st.one_of(st.binary(max_size=16), st.none())), min_size=1, max_size=4))
def test_hf_dataset_reader_reports_or_reads_any_rows(rows):
    datasets = pytest.importorskip("datasets")
    from f2tune.config import HfDatasetSource

    with folder() as root:
        table = {
            "prompt": [p for p, _, _ in rows],
            "target": [t for _, t, _ in rows],
            "image": [b for _, _, b in rows],
        }
        datasets.Dataset.from_dict(table).save_to_disk(str(root / "ds"))
        source = HfDatasetSource(format="hf_dataset", path=str(root / "ds"))
        try:
            samples = read_source(source, RecordProblems("skip"))
        except F2TuneError:
            return
        for sample in samples:  # undecodable image bytes surface as DataError when opened
            try:
                sample.image.render()
            except F2TuneError:
                pass
