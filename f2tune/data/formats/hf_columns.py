"""Columns of a Hugging Face dataset named by a dotted path into its struct columns.

Hub datasets often keep a row's annotations as records: one struct (`annotation: {bbox, caption}`)
or a list of them (`entities: [{phrase, boxes}, ...]`). `annotation_columns` names a field of those
records as `column.field` (deeper fields as `column.field.subfield`): a struct gives its field's
value, a list of structs the list of its items' values. A column whose own name holds a dot is
taken whole.
"""

from __future__ import annotations

from typing import Any

from f2tune.errors import DataError


def root_column(path: str, column_names: list[str]) -> str:
    """The dataset column `path` starts in."""
    return path if path in column_names else path.split(".", 1)[0]


def column_values(dataset: Any, path: str) -> list[Any]:
    """Each row's value at `path` (checked against the features by `check_column_paths`)."""
    root = root_column(path, dataset.column_names)
    values = list(dataset[root])
    for field in _fields(path, root):
        values = [_field_of(value, field) for value in values]
    return values


def feature_at(dataset: Any, path: str) -> Any:
    """The `datasets` feature of the values at `path` (a list's item feature for list paths)."""
    root = root_column(path, dataset.column_names)
    feature = dataset.features[root]
    for field in _fields(path, root):
        feature = _record_feature(feature)[field]
    return feature


def check_column_paths(dataset: Any, paths: list[str], where: str) -> None:
    """Refuse a path whose fields the dataset's records do not have, naming the fields they do have."""
    for path in paths:
        root = root_column(path, dataset.column_names)
        feature, walked = dataset.features[root], root
        for field in _fields(path, root):
            record = _record_feature(feature)
            if record is None:
                raise DataError(f"{where}: '{path}': column '{walked}' holds {feature}, not records with fields")
            if field not in record:
                raise DataError(
                    f"{where}: '{path}': the records of '{walked}' have no field '{field}'; "
                    f"their fields: {', '.join(record)}"
                )
            feature, walked = record[field], f"{walked}.{field}"


def _fields(path: str, root: str) -> list[str]:
    return path[len(root) + 1 :].split(".") if path != root else []


def _record_feature(feature: Any) -> dict[str, Any] | None:
    """The fields of a struct feature, or of a list of structs; None for any other feature."""
    while not isinstance(feature, dict) and hasattr(feature, "feature"):  # List / Sequence of structs
        feature = feature.feature
    return feature if isinstance(feature, dict) else None


def _field_of(value: Any, field: str) -> Any:
    """`field` of one record, or of each record of a list; None where a row holds no record (the
    row's check names it)."""
    if isinstance(value, dict):
        return value.get(field)
    if isinstance(value, list):
        return [_field_of(item, field) for item in value]
    return None
