"""Structured rows of Hugging Face datasets: columns mapped to annotation fields become samples of
any task in pixels (grounding, referring expressions, segmentation, regions), as structured_jsonl's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.dataset import SampleDataset
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError, RecipeError
from f2tune.recipe import validate_recipe
from f2tune.tasks import format_target, parse_output

datasets = pytest.importorskip("datasets")

REFCOCO_COLUMNS = {"query": "answer", "boxes": "bbox", "polygons": "segmentation"}


def refcoco_layout(tmp_path: Path, rows: list[dict], size: tuple[int, int] = (40, 30)) -> Path:
    """A save_to_disk folder laid out as RefCOCO is on the Hub: per object its referring expressions
    (`answer`, a list), its box (`bbox`, x, y, w, h) and its polygon (`segmentation`, flat x, y)."""
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "answer": datasets.List(datasets.Value("string")),
            "bbox": datasets.List(datasets.Value("float32")),
            "segmentation": datasets.List(datasets.Value("float32")),
        }
    )
    table = {"image": [Image.new("RGB", size, (90, 0, 0)) for _ in rows]}
    table |= {key: [row[key] for row in rows] for key in ("answer", "bbox", "segmentation")}
    path = tmp_path / "refcoco"
    datasets.Dataset.from_dict(table, features=features).save_to_disk(str(path))
    return path


def read(path: Path, task: str, columns: dict, policy: str = "error", **options) -> tuple[list, RecordProblems]:
    entry = {"format": "hf_dataset", "path": str(path), "prompt": task, "annotation_columns": columns, **options}
    problems = RecordProblems(policy)
    return read_source(DataConfig(train=[entry]).train[0], problems), problems


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))


OBJECT = {"answer": ["man on left", "guy in red"], "bbox": [2, 3, 10, 20], "segmentation": [2, 3, 12, 3, 12, 23]}


def test_each_referring_expression_becomes_a_detection_sample_named_by_it(tmp_path):
    samples, _ = read(refcoco_layout(tmp_path, [OBJECT]), "<OPEN_VOCABULARY_DETECTION>",
                      {"query": "answer", "boxes": "bbox"}, box_format="xywh")  # fmt: skip
    assert [s.origin.rsplit(":", 1)[1] for s in samples] == ["row 0 query 0", "row 0 query 1"]
    assert samples[1].reference == {"query": "guy in red", "boxes": [[2, 3, 12, 23]], "labels": ["guy in red"]}
    item = SampleDataset(samples)[1]
    assert item["prompt"] == "<OPEN_VOCABULARY_DETECTION>guy in red"
    assert item["target"] == format_target("<OPEN_VOCABULARY_DETECTION>", samples[1].reference, (40, 30))
    assert item["target"].startswith("guy in red<loc_")


def test_a_flat_polygon_trains_referring_segmentation(tmp_path):
    samples, _ = read(refcoco_layout(tmp_path, [OBJECT]), "<REFERRING_EXPRESSION_SEGMENTATION>",
                      {"query": "answer", "polygons": "segmentation"})  # fmt: skip
    assert samples[0].reference == {"query": "man on left", "polygons": [[2, 3, 12, 3, 12, 23]]}
    assert SampleDataset(samples)[0]["target"] == format_target(
        "<REFERRING_EXPRESSION_SEGMENTATION>", samples[0].reference, (40, 30)
    )


def test_an_rle_segmentation_is_traced_into_polygons(tmp_path):
    mask_utils = pytest.importorskip("pycocotools.mask")
    mask = np.zeros((30, 40), dtype=np.uint8, order="F")
    mask[5:15, 10:30] = 1
    rle = mask_utils.encode(mask)
    rle["counts"] = rle["counts"].decode()
    rows = {"image": [Image.new("RGB", (40, 30))], "expression": ["the box"], "mask": [rle]}
    path = tmp_path / "rle"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    samples, _ = read(path, "<REFERRING_EXPRESSION_SEGMENTATION>", {"query": "expression", "polygons": "mask"})
    (polygon,) = samples[0].reference["polygons"]
    xs, ys = polygon[0::2], polygon[1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (10.5, 29.5, 5.5, 14.5)


def test_regions_and_their_text_with_sizes_checked(tmp_path):
    rows = {
        "image": [Image.new("RGB", (40, 30))] * 2,
        "width": [40, 40],
        "height": [30, 30],
        "box": [[1, 1, 20, 20], [30, 1, 50, 20]],  # the second reaches x=50 in a 40 wide image
        "name": ["cup", "plate"],
    }
    path = tmp_path / "regions"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    samples, problems = read(path, "<REGION_TO_CATEGORY>", {"region": "box", "text": "name"}, "skip", box_format="xyxy")
    assert [s.reference for s in samples] == [{"text": "cup", "region": [1, 1, 20, 20]}]
    assert SampleDataset(samples)[0]["prompt"].startswith("<REGION_TO_CATEGORY><loc_")
    (problem,) = problems.found
    assert "row 1: region lies outside the 40x30 image" in problem


def test_a_field_the_task_needs_and_the_mapping_lacks_is_found_when_read(tmp_path):
    path = refcoco_layout(tmp_path, [OBJECT])
    with pytest.raises(DataError, match=r"row 0: <OD> needs the annotation field 'labels' \(fields given: boxes\)"):
        read(path, "<OD>", {"boxes": "bbox"}, box_format="xywh")
    with pytest.raises(DataError, match=r"row 0 query 0: <REGION_TO_SEGMENTATION> needs the annotation field 'region'"):
        read(path, "<REGION_TO_SEGMENTATION>", {"query": "answer", "polygons": "segmentation"})
    with pytest.raises(DataError, match=r"no column\(s\) sentences; the dataset has image, answer, bbox, segmentation"):
        read(path, "<OPEN_VOCABULARY_DETECTION>", {"query": "sentences", "boxes": "bbox"}, box_format="xywh")


def test_bad_values_are_named_by_row_and_column(tmp_path):
    rows = [OBJECT, {**OBJECT, "bbox": [2, 3, 0, 20]}, {**OBJECT, "segmentation": [1, 2, 3]}]
    path = refcoco_layout(tmp_path, rows)
    _, problems = read(path, "<OPEN_VOCABULARY_DETECTION>", {"query": "answer", "boxes": "bbox"}, "skip",
                       box_format="xywh")  # fmt: skip
    (problem,) = problems.found
    assert "row 1: column 'bbox'[0] must be x, y, width, height with a positive size" in problem
    _, problems = read(path, "<REFERRING_EXPRESSION_SEGMENTATION>", {"query": "answer", "polygons": "segmentation"},
                       "skip")  # fmt: skip
    (problem,) = problems.found
    assert "row 2: column 'segmentation': segmentation polygons need an even count (>= 6)" in problem


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"prompt": "<OD>", "annotation_columns": {"boxes": "bbox", "labels": "name"}}, "need box_format"),
        ({"prompt": "find the cup", "annotation_columns": {"text": "t"}}, "prompt is the task, one of Florence-2's"),
        ({"prompt": "<OCR>", "annotation_columns": {}}, "annotation_columns names no column"),
        (
            {"prompt": "<OCR>", "annotation_columns": {"txt": "t"}},
            "annotation_columns: Input should be 'text', 'answers'",
        ),
        (
            {"prompt": "<OD>", "annotation_columns": {"text": "t"}, "objects_column": "o", "box_format": "xywh"},
            "objects_column or annotation_columns, not both",
        ),
    ],
)
def test_the_recipe_says_what_annotation_columns_need(options, problem):
    source = {"format": "hf_dataset", "path": "x", **options}
    recipe = {"model": {"name_or_path": "f2tune://tiny"}, "data": {"train": [source]}}
    with pytest.raises(RecipeError, match="data.train.0") as caught:
        validate_recipe(recipe)
    assert problem in str(caught.value)


def test_ocr_lines_boxed_rather_than_quadded_become_their_corners(tmp_path):
    rows = {
        "image": [Image.new("RGB", (40, 30))],
        "words": [["TOTAL", "9.99"]],
        "boxes": [[[1, 2, 10, 5], [20, 2, 8, 5]]],
    }
    path = tmp_path / "receipts"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    columns = {"quads": "boxes", "labels": "words"}
    samples, _ = read(path, "<OCR_WITH_REGION>", columns, box_format="xywh")
    assert samples[0].reference == {
        "quads": [[1, 2, 11, 2, 11, 7, 1, 7], [20, 2, 28, 2, 28, 7, 20, 7]],
        "labels": ["TOTAL", "9.99"],
    }
    with pytest.raises(DataError, match=r"row 0: column 'boxes'\[0\] is a box of 4 numbers, not a quad of 8: set box"):
        read(path, "<OCR_WITH_REGION>", columns)


def test_detection_in_flat_columns_with_class_label_ids(tmp_path):
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "boxes": datasets.List(datasets.List(datasets.Value("float32"))),
            "classes": datasets.List(datasets.ClassLabel(names=["cup", "plate"])),
        }
    )
    rows = {"image": [Image.new("RGB", (40, 30))], "boxes": [[[1, 1, 10, 10], [20, 5, 30, 25]]], "classes": [[1, 0]]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "flat"))
    samples, _ = read(tmp_path / "flat", "<OD>", {"boxes": "boxes", "labels": "classes"}, box_format="xyxy")
    assert samples[0].reference == {"boxes": [[1, 1, 10, 10], [20, 5, 30, 25]], "labels": ["plate", "cup"]}


def grounding_layout(tmp_path: Path, entities: list[list[dict]]) -> Path:
    """Rows laid out as phrase-grounding datasets hold them: a caption and a list of entity records,
    each a phrase with every box it names (a phrase may name none)."""
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "entities": datasets.List(
                {"phrase": datasets.Value("string"), "boxes": datasets.List(datasets.List(datasets.Value("int32")))}
            ),
        }
    )
    rows = {
        "image": [Image.new("RGB", (40, 30))] * len(entities),
        "caption": ["two dogs chase a ball in the park"] * len(entities),
        "entities": entities,
    }
    path = tmp_path / "grounding"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    return path


GROUNDING_COLUMNS = {"query": "caption", "labels": "entities.phrase", "boxes": "entities.boxes"}
DOGS = [
    {"phrase": "two dogs", "boxes": [[1, 1, 10, 10], [12, 1, 20, 10]]},
    {"phrase": "the park", "boxes": []},  # named by the caption, boxed nowhere
    {"phrase": "a ball", "boxes": [[25, 20, 30, 25]]},
]


def test_phrases_with_several_boxes_each_from_a_list_of_entity_records(tmp_path):
    path = grounding_layout(tmp_path, [DOGS])
    (sample,) = read(path, "<CAPTION_TO_PHRASE_GROUNDING>", GROUNDING_COLUMNS, box_format="xyxy")[0]
    assert sample.reference == {
        "query": "two dogs chase a ball in the park",
        "boxes": [[1, 1, 10, 10], [12, 1, 20, 10], [25, 20, 30, 25]],
        "labels": ["two dogs", "two dogs", "a ball"],
    }
    item = SampleDataset([sample])[0]
    assert item["prompt"] == "<CAPTION_TO_PHRASE_GROUNDING>two dogs chase a ball in the park"
    assert item["target"].count("two dogs") == 1  # one phrase for its run of boxes, as Florence-2 writes it
    assert (
        parse_output("<CAPTION_TO_PHRASE_GROUNDING>", item["target"], (40, 30))["labels"] == sample.reference["labels"]
    )


def test_a_field_of_a_struct_column(tmp_path):
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "annotation": {"bbox": datasets.List(datasets.Value("float32")), "caption": datasets.Value("string")},
        }
    )
    rows = {"image": [Image.new("RGB", (40, 30))], "annotation": [{"bbox": [2, 3, 10, 20], "caption": "the cup"}]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "struct"))
    columns = {"query": "annotation.caption", "boxes": "annotation.bbox"}
    (sample,) = read(tmp_path / "struct", "<OPEN_VOCABULARY_DETECTION>", columns, box_format="xywh")[0]
    assert sample.reference == {"query": "the cup", "boxes": [[2, 3, 12, 23]], "labels": ["the cup"]}


def test_paths_the_records_lack_and_groups_their_labels_do_not_match_are_named(tmp_path):
    path = grounding_layout(tmp_path, [DOGS])
    task = "<CAPTION_TO_PHRASE_GROUNDING>"
    with pytest.raises(DataError, match=r"'entities.box': the records of 'entities' have no field 'box'; their fields: "
                       r"phrase, boxes"):  # fmt: skip
        read(path, task, {**GROUNDING_COLUMNS, "boxes": "entities.box"}, box_format="xyxy")
    with pytest.raises(DataError, match=r"'caption.text': column 'caption' holds Value\('string'\), not records"):
        read(path, task, {**GROUNDING_COLUMNS, "query": "caption.text"}, box_format="xyxy")
    columns = {**GROUNDING_COLUMNS, "labels": "caption"}  # one string where a label per group is needed
    with pytest.raises(DataError, match=r"row 0: column 'entities.boxes' holds 3 groups of boxes \(one per label\), "
                       r"but column 'caption' holds 1 label\(s\)"):  # fmt: skip
        read(path, task, columns, box_format="xyxy")
