"""Dotted paths into a Hugging Face dataset's struct columns (`annotation_columns`)."""

from __future__ import annotations

import pytest

from f2tune.data.formats.hf_columns import check_column_paths, column_values, feature_at, root_column
from f2tune.errors import DataError

datasets = pytest.importorskip("datasets")


def test_struct_fields_list_items_and_dotted_column_names():
    features = datasets.Features(
        {
            "ann": {"box": datasets.List(datasets.Value("int32")), "name": datasets.Value("string")},
            "objs": datasets.List({"cls": datasets.ClassLabel(names=["cup", "plate"])}),
            "old": datasets.Sequence({"cls": datasets.Value("string")}),  # a dict of lists in datasets 5
            "a.b": datasets.Value("string"),
        }
    )
    rows = {
        "ann": [{"box": [1, 2, 3, 4], "name": "cup"}, None],
        "objs": [[{"cls": 1}, {"cls": 0}], []],
        "old": [{"cls": ["x", "y"]}, {"cls": []}],
        "a.b": ["whole", "name"],
    }
    dataset = datasets.Dataset.from_dict(rows, features=features)
    check_column_paths(dataset, ["ann.box", "objs.cls", "old.cls", "a.b"], "here")
    assert column_values(dataset, "ann.box") == [[1, 2, 3, 4], None]
    assert column_values(dataset, "objs.cls") == [[1, 0], []]
    assert column_values(dataset, "old.cls") == [["x", "y"], []]
    assert column_values(dataset, "a.b") == ["whole", "name"]
    assert root_column("a.b", dataset.column_names) == "a.b"
    assert root_column("objs.cls", dataset.column_names) == "objs"
    assert feature_at(dataset, "objs.cls").names == ["cup", "plate"]


def test_a_field_below_a_plain_value_is_refused():
    dataset = datasets.Dataset.from_dict({"ann": [{"box": [1, 2, 3, 4]}]})
    with pytest.raises(DataError, match=r"here: 'ann.box.x': column 'ann.box' holds List\(Value\('int64'\)\), not rec"):
        check_column_paths(dataset, ["ann.box.x"], "here")
