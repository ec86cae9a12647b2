"""A Hugging Face `datasets` dataset saved with `save_to_disk`. `format: hf_dataset`.

For data already in the `datasets` world (a Hub dataset loaded, filtered and saved once): rows
with an image column and plain prompt/target text columns, exactly like the JSONL format
(`target` is the `<loc_N>` text when the task has locations). The extra is optional
(`pip install 'f2tune[datasets]'`), so it is imported only when such a source is read.

Images are not decoded when the data is read: each sample holds a `DatasetImage` (the dataset,
memory-mapped and cheap to pickle into DataLoader workers, and a row index) whose `render()`
decodes that row's image when the batch needs it. Image columns may be `datasets.Image` features
(stored bytes or a path), raw bytes, or paths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from f2tune.config import HfDatasetSource
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.tasks.tokens import check_prompt


@dataclass(frozen=True, eq=False)
class DatasetImage:
    """One row's image, decoded on demand (see `RenderedImage`)."""

    dataset: Any
    index: int
    column: str
    origin: str

    def render(self) -> Image.Image:
        value = self.dataset[self.index][self.column]
        try:
            if isinstance(value, Image.Image):
                return value
            if isinstance(value, dict):  # a datasets.Image feature read with decode=False
                value = value.get("bytes") or value.get("path")
            if isinstance(value, (bytes, bytearray)):
                with Image.open(io.BytesIO(value)) as opened:
                    opened.load()
                    return opened.copy()
            if isinstance(value, str):
                with Image.open(value) as opened:
                    opened.load()
                    return opened.copy()
        except (OSError, ValueError) as err:
            raise DataError(f"{self.origin}: cannot decode image in column '{self.column}': {err}") from None
        raise DataError(f"{self.origin}: column '{self.column}' holds {type(value).__name__}, not an image")


def read_hf_dataset(source: HfDatasetSource, problems: RecordProblems) -> list[Sample]:
    """Samples of one saved dataset (one split); bad rows go to `problems`."""
    dataset, where = _load(source)
    columns = [source.image_column, source.target_column] + ([source.prompt_column] if source.prompt_column else [])
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{where}: no column(s) {', '.join(missing)}; the dataset has {', '.join(dataset.column_names)}"
        )
    if source.prompt_column is None and source.prompt is None:
        raise DataError(f"{where}: set `prompt_column` or `prompt` on the data source")
    images = _lazy_images(dataset, source.image_column)
    targets = list(dataset[source.target_column])
    prompts = list(dataset[source.prompt_column]) if source.prompt_column else [None] * len(targets)
    samples = []
    for index, (prompt, target) in enumerate(zip(prompts, targets)):
        origin = f"{where}:row {index}"
        try:
            prompt = _text(prompt, source.prompt, source.prompt_column, origin)
            target = _text(target, None, source.target_column, origin)
            if reason := check_prompt(prompt):
                raise DataError(f"{origin}: {reason}")
        except DataError as err:
            problems.report(str(err))
            continue
        image = DatasetImage(images, index, source.image_column, origin)
        samples.append(
            Sample(id=f"{Path(source.path).name}-{index}", image=image, prompt=prompt, target=target, origin=origin)
        )
    return samples


def _load(source: HfDatasetSource) -> tuple[Any, str]:
    try:
        import datasets
    except ImportError:
        raise DataError("format hf_dataset needs the `datasets` package: pip install 'f2tune[datasets]'") from None
    path = Path(source.path)
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path} (write it with Dataset.save_to_disk)")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"{path}: not a dataset saved with save_to_disk: {err}") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        split = source.split if source.split is not None else (splits[0] if len(splits) == 1 else None)
        if split not in loaded:
            given = "no split given" if source.split is None else f"no split {source.split!r}"
            raise DataError(f"{path}: {given}; set `split:` to one of {', '.join(splits)}")
        return loaded[split], f"{path}[{split}]"
    if source.split is not None:
        raise DataError(f"{path}: holds a single dataset, not splits: remove `split: {source.split}`")
    return loaded, str(path)


def _lazy_images(dataset: Any, column: str) -> Any:
    """Only the image column, with `datasets.Image` decoding off: rows give bytes, not PIL images."""
    import datasets

    images = dataset.select_columns([column])
    if isinstance(images.features[column], datasets.Image):
        images = images.cast_column(column, datasets.Image(decode=False))
    return images


def _text(value: Any, default: str | None, column: str | None, origin: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if default is not None:
        return default
    raise DataError(f"{origin}: column '{column}' must hold non-empty text, got {value!r}")
