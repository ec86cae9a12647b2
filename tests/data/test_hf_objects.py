"""Detection rows of Hugging Face datasets: an objects column of boxes and categories becomes
`<OD>` samples in pixels, whose target text is built like any structured format's."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.dataset import SampleDataset
from f2tune.data.formats import read_source
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError, RecipeError
from f2tune.recipe import validate_recipe
from f2tune.tasks import format_target

datasets = pytest.importorskip("datasets")

NAMES = ["Coverall", "Face_Shield", "Gloves"]


def cppe5_layout(tmp_path: Path, objects: list[dict], sizes: list[tuple[int, int]] | None = None) -> Path:
    """Parquet files as cppe-5 has them on the Hub: width, height, and objects as a `Sequence` of
    {id, bbox (x, y, w, h), category (ClassLabel)}, which `datasets` reads as a dict of lists."""
    sizes = sizes or [(40, 30)] * len(objects)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "objects": datasets.Sequence(
                {
                    "id": datasets.Value("int64"),
                    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
                    "category": datasets.ClassLabel(names=NAMES),
                }
            ),
        }
    )
    rows = {
        "image": [Image.new("RGB", size, (0, 90, 0)) for size in sizes],
        "width": [w for w, _ in sizes],
        "height": [h for _, h in sizes],
        "objects": objects,
    }
    folder = tmp_path / "cppe-5"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(folder / "data/train-00000-of-00001.parquet")
    return folder


def read(path: Path, policy: str = "error", read_as: str = "train", **options) -> tuple[list, RecordProblems]:
    entry = {"format": "hf_dataset", "path": str(path), "objects_column": "objects", "box_format": "xywh", **options}
    problems = RecordProblems(policy)
    return read_source(DataConfig(train=[entry]).train[0], problems, read_as), problems


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))


def test_objects_with_class_labels_become_detection_samples_in_pixels(tmp_path):
    objects = [
        {"id": [1, 2], "bbox": [[2, 3, 10, 5], [20, 0, 20, 30]], "category": [2, 0]},
        {"id": [], "bbox": [], "category": []},  # no objects: left out of training, as coco_detection does
        {"id": [3], "bbox": [[0, 0, 8, 8]], "category": [1]},
    ]
    samples, _ = read(cppe5_layout(tmp_path, objects), split="train")
    assert [s.task for s in samples] == ["<OD>", "<OD>"]
    assert samples[0].reference == {"boxes": [[2, 3, 12, 8], [20, 0, 40, 30]], "labels": ["Gloves", "Coverall"]}
    assert samples[1].reference == {"boxes": [[0, 0, 8, 8]], "labels": ["Face_Shield"]}
    assert samples[1].origin.endswith("[train]:row 2")
    item = SampleDataset(samples)[0]
    assert item["prompt"] == "<OD>" and item["image"].size == (40, 30)
    assert item["target"] == format_target("<OD>", samples[0].reference, (40, 30))
    assert item["target"].startswith("Gloves<loc_")


@pytest.mark.parametrize(
    ("read_as", "policy", "kept"), [("val", "auto", True), ("train", "keep", True), ("val", "skip", False)]
)
def test_a_row_without_objects_is_evaluated_and_trained_when_told(tmp_path, read_as, policy, kept):
    objects = [{"id": [], "bbox": [], "category": []}, {"id": [3], "bbox": [[0, 0, 8, 8]], "category": [1]}]
    samples, _ = read(cppe5_layout(tmp_path, objects), read_as=read_as, split="train", images_without_objects=policy)
    assert [s.reference["boxes"] for s in samples] == [[], [[0, 0, 8, 8]]][0 if kept else 1 :]


def test_a_list_of_object_dicts_with_names_as_dense_region_captions(tmp_path):
    """`datasets.List` of a dict gives a list of dicts per row; categories may be plain names."""
    features = datasets.Features(
        {
            "picture": datasets.Image(),
            "objects": datasets.List(
                {"box": datasets.List(datasets.Value("float32")), "label": datasets.Value("string")}
            ),
        }
    )
    rows = {"picture": [Image.new("RGB", (16, 16))], "objects": [[{"box": [1, 2, 9, 12], "label": "a red cup"}]]}
    path = tmp_path / "saved"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    samples, _ = read(path, image_column="picture", box_format="xyxy", box_key="box", label_key="label",
                      prompt="<DENSE_REGION_CAPTION>")  # fmt: skip
    assert samples[0].task == "<DENSE_REGION_CAPTION>"
    assert samples[0].reference == {"boxes": [[1, 2, 9, 12]], "labels": ["a red cup"]}


def test_a_label_its_parser_cannot_read_back_is_named_when_read(tmp_path):
    features = datasets.Features(
        {"image": datasets.Image(), "objects": datasets.List({"box": datasets.List(datasets.Value("int32")),
                                                              "label": datasets.Value("string")})}
    )  # fmt: skip
    rows = {"image": [Image.new("RGB", (16, 16))], "objects": [[{"box": [1, 2, 9, 12], "label": "cup\nlid"}]]}
    path = tmp_path / "saved"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    with pytest.raises(DataError, match=r"row 0: <OD>: label 'cup\\nlid' contains"):
        read(path, box_format="xyxy", box_key="box", label_key="label")


def test_bad_rows_are_named_and_the_good_ones_kept(tmp_path):
    objects = [
        {"id": [1], "bbox": [[30, 0, 20, 10]], "category": [0]},  # reaches x=50 in a 40 wide image
        {"id": [2], "bbox": [[0, 0, 0, 10]], "category": [0]},
        {"id": [3], "bbox": [[0, 0, 5, 5]], "category": [1]},
    ]
    samples, problems = read(cppe5_layout(tmp_path, objects), "skip", split="train")
    assert [s.reference["labels"] for s in samples] == [["Face_Shield"]]
    first, second = problems.found
    assert "[train]:row 0: boxes[0] lies outside the 40x30 image" in first
    assert "is box_format xywh how this dataset writes boxes?" in first
    assert "row 1: objects[0].bbox must be x, y, width, height with a positive size" in second


def test_missing_keys_and_unnamed_class_ids_say_what_to_set(tmp_path):
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "objects": datasets.List({"bbox": datasets.List(datasets.Value("int32")), "cat": datasets.Value("int32")}),
        }  # fmt: skip
    )
    rows = {"image": [Image.new("RGB", (16, 16))], "objects": [[{"bbox": [1, 2, 3, 4], "cat": 7}]]}
    path = tmp_path / "saved"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    with pytest.raises(DataError, match=r"row 0: column 'objects' has no key 'category'; its keys are 'bbox', 'cat'"):
        read(path)
    with pytest.raises(DataError, match=r"objects\[0\].cat is the class id 7, and the dataset names no classes"):
        read(path, label_key="cat")
    with pytest.raises(DataError, match=r"no column\(s\) boxes; the dataset has image, objects"):
        read(path, objects_column="boxes")


def test_a_class_id_beyond_the_class_label_is_named(tmp_path):
    path = cppe5_layout(tmp_path, [{"id": [1], "bbox": [[0, 0, 5, 5]], "category": [1]}])
    samples, _ = read(path, split="train")
    assert samples[0].reference["labels"] == ["Face_Shield"]
    table = datasets.load_dataset(str(path), split="train").cast_column("objects", datasets.Sequence(
        {"id": datasets.Value("int64"), "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
         "category": datasets.ClassLabel(names=NAMES[:1])}))  # fmt: skip
    table.save_to_disk(str(tmp_path / "fewer"))
    with pytest.raises(DataError, match=r"objects\[0\].category is class 1, but the ClassLabel has 1 names"):
        read(tmp_path / "fewer")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "objects_column needs box_format: xywh (x, y, width, height, as COCO and cppe-5 write boxes) or xyxy"),
        ({"box_format": "xyxy", "prompt": "<CAPTION>"}, "with objects_column, prompt is the task: <OD> or"),
    ],
)
def test_the_recipe_says_what_objects_need(options, problem):
    source = {"format": "hf_dataset", "path": "d", "objects_column": "objects", **options}
    with pytest.raises(RecipeError, match="data.train.0") as caught:
        validate_recipe({"model": {"name_or_path": "x"}, "data": {"train": [source]}, "trainer": {"max_steps": 1}})
    assert problem in str(caught.value)


def test_images_without_objects_needs_detection_rows(tmp_path):
    entry = {"format": "hf_dataset", "path": str(tmp_path), "images_without_objects": "keep"}
    with pytest.raises(ValueError, match="images_without_objects applies to detection rows: set objects_column"):
        DataConfig(train=[{"format": "shapes"}], val=[entry])
