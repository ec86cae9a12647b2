"""A Hugging Face `datasets` dataset: a Hub id, a local data folder, or a `save_to_disk` folder.
`format: hf_dataset`.

For data already in the `datasets` world: rows with an image column and plain prompt/target text
columns, exactly like the JSONL format (`target` is the `<loc_N>` text when the task has locations).
A target column of answer lists (DocVQA's `answers`) makes free-text question samples like the
`vqa` format: the most common answer is trained, all of them are kept for VQA accuracy and ANLS.
Under a caption prompt a list holds an image's captions (COCO's five): one sample per caption, or
with `one_per_image` one sample holding them all as references, as the caption formats do.
Detection datasets, whose rows hold objects (boxes and categories) instead of text, are read by
`hf_objects` when the source names its `objects_column`; rows whose columns hold a task's
annotation (grounding boxes and their query, polygons, regions) by `hf_structured` when it maps
them in `annotation_columns`.
The extra is optional (`pip install 'f2tune[datasets]'`), so it is imported only when such a source
is read.

A folder that `save_to_disk` wrote is opened with `load_from_disk`; any other path goes to
`load_dataset` (Hub ids such as `HuggingFaceM4/DocumentVQA`, folders of parquet/JSON/CSV files or
of images with a `metadata.jsonl` naming each `file_name` beside its prompt and target),
which downloads once into the `datasets` cache (`HF_DATASETS_CACHE`) and memory-maps it.

Images are not decoded when the data is read: each sample holds a `DatasetImage` (the dataset,
memory-mapped and cheap to pickle into DataLoader workers, and a row index) whose `render()`
decodes that row's image when the batch needs it. Image columns may be `datasets.Image` features
(stored bytes or a path), raw bytes, or paths (relative to `image_root` where the source sets one:
datasets that name COCO's files rather than hold them).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from f2tune.config import HfDatasetSource
from f2tune.config.sources import CAPTION_TASKS
from f2tune.data.formats.captions import caption_samples
from f2tune.data.formats.hf_columns import check_column_paths, root_column
from f2tune.data.formats.hf_objects import RowSample, object_rows
from f2tune.data.formats.hf_structured import structured_rows
from f2tune.data.formats.vqa import question_sample
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import RenderedImage, Sample
from f2tune.errors import DataError
from f2tune.tasks import CUSTOM, task_of
from f2tune.tasks.checks import check_text_sample

SAVED_MARKERS = ("state.json", "dataset_dict.json")
"""Files `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write at the top of their folder."""


@dataclass(frozen=True, eq=False)
class DatasetImage:
    """One row's image, decoded on demand (see `RenderedImage`)."""

    dataset: Any
    index: int
    column: str
    origin: str
    root: str | None = None
    """Where relative paths in the column start (`image_root`); else the working directory."""

    def render(self) -> Image.Image:
        """The decoded image, upright per its EXIF orientation, as `datasets` itself decodes it
        (and as f2tune reads image files): boxes are drawn on what people see."""
        value = self.dataset[self.index][self.column]
        try:
            if isinstance(value, Image.Image):
                return value
            if isinstance(value, dict):  # a datasets.Image feature read with decode=False
                value = value.get("bytes") or value.get("path")
            if isinstance(value, (bytes, bytearray)):
                value = io.BytesIO(value)
            if isinstance(value, str) and self.root is not None:
                value = str(Path(self.root) / value)
            if isinstance(value, (str, io.BytesIO)):
                with Image.open(value) as opened:
                    opened.load()
                    return ImageOps.exif_transpose(opened)
        except FileNotFoundError:
            raise DataError(f"{self.origin}: image not found: {value}") from None
        except (OSError, ValueError) as err:
            raise DataError(f"{self.origin}: cannot decode image in column '{self.column}': {err}") from None
        raise DataError(f"{self.origin}: column '{self.column}' holds {type(value).__name__}, not an image")


def read_hf_dataset(source: HfDatasetSource, problems: RecordProblems) -> list[Sample]:
    """Samples of one saved dataset (one split); bad rows go to `problems`."""
    dataset, where = _load(source)
    missing = [c for c in _columns_read(source, dataset.column_names) if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{where}: no column(s) {', '.join(missing)}; the dataset has {', '.join(dataset.column_names)}"
        )
    if source.annotation_columns is not None:
        check_column_paths(dataset, list(source.annotation_columns.values()), where)
    text_rows = source.objects_column is None and source.annotation_columns is None
    if text_rows and source.prompt_column is None and source.prompt is None:
        raise DataError(f"{where}: set `prompt_column` or `prompt` on the data source")
    images = _lazy_images(dataset, source.image_column)
    name = Path(source.path).name
    if source.objects_column is not None:
        rows = object_rows(dataset, source)
    elif source.annotation_columns is not None:
        rows = structured_rows(dataset, source)
    else:
        rows = _text_rows(dataset, source)
    samples = []
    for index, row in enumerate(rows):
        origin = f"{where}:row {index}"
        try:
            image = DatasetImage(images, index, source.image_column, origin, source.image_root)
            samples += row(f"{name}-{index}", image, origin)
        except DataError as err:
            problems.report(str(err))
    return samples


def _columns_read(source: HfDatasetSource, column_names: list[str]) -> list[str]:
    """The columns the source's rows are read from."""
    if source.objects_column is not None:
        return [source.image_column, source.objects_column]
    if source.annotation_columns is not None:
        roots = (root_column(path, column_names) for path in source.annotation_columns.values())
        return [source.image_column, *dict.fromkeys(roots)]
    return [source.image_column, source.target_column] + ([source.prompt_column] if source.prompt_column else [])


def _text_rows(dataset: Any, source: HfDatasetSource) -> Iterator[RowSample]:
    """One sample builder per row of prompt and target text."""
    targets = list(dataset[source.target_column])
    prompts = list(dataset[source.prompt_column]) if source.prompt_column else [None] * len(targets)
    for prompt, target in zip(prompts, targets):
        yield partial(_text_sample, prompt=prompt, target=target, source=source)


def _text_sample(
    sample_id: str, image: RenderedImage, origin: str, *, prompt: Any, target: Any, source: HfDatasetSource
) -> list[Sample]:
    """A prompt/target sample; for a target column of lists, a question sample (the list is its
    answers) or caption samples (one per caption, or one per image with `one_per_image`)."""
    prompt = _text(prompt, source.prompt, source.prompt_column, origin)
    try:
        task = task_of(prompt)
    except DataError as err:
        raise DataError(f"{origin}: {err}") from None
    if not isinstance(target, list):
        target = _text(target, None, source.target_column, origin)
        reason = check_text_sample(task, prompt, target)
        if reason is not None:
            raise DataError(f"{origin}: {reason}")
        return [Sample(id=sample_id, image=image, prompt=prompt, target=target, origin=origin, task=task.token)]
    if task is not CUSTOM and task.token not in CAPTION_TASKS:
        raise DataError(
            f"{origin}: column '{source.target_column}' holds a list, which only a free-text prompt (a question "
            f"and its answers) or a caption task ({', '.join(CAPTION_TASKS)}: its captions) can have, not {task.token}"
        )
    texts = [a for a in target if isinstance(a, str) and a.strip()]
    if not texts or len(texts) != len(target):
        raise DataError(f"{origin}: column '{source.target_column}' must hold non-empty strings, got {target!r}")
    if task is CUSTOM:
        return [question_sample(sample_id, image, prompt.strip(), texts, origin)]
    found = [(str(number), text.strip(), f"{origin} caption {number}") for number, text in enumerate(texts)]
    return caption_samples(task.token, source.one_per_image, sample_id, image, origin, found)


def _load(source: HfDatasetSource) -> tuple[Any, str]:
    """The dataset of the source's split, and how messages name it."""
    try:
        import datasets
    except ImportError:
        raise DataError("format hf_dataset needs the `datasets` package: pip install 'f2tune[datasets]'") from None
    path = Path(source.path)
    if any((path / marker).is_file() for marker in SAVED_MARKERS):
        loaded = _load_from_disk(datasets, source)
    else:  # load_dataset returns the split alone when given one
        loaded = _load_dataset(datasets, source)
        if source.split is not None:
            return loaded, f"{source.path}[{source.split}]"
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


def _load_from_disk(datasets: Any, source: HfDatasetSource) -> Any:
    if source.subset is not None or source.revision is not None:
        raise DataError(f"{source.path}: a save_to_disk folder has no `subset` or `revision`: remove them")
    try:
        return datasets.load_from_disk(source.path)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"{source.path}: cannot open this save_to_disk folder: {err}") from None


def _load_dataset(datasets: Any, source: HfDatasetSource) -> Any:
    """`load_dataset` of a Hub id or a local data folder; only the source's split when it names one
    (from the Hub, only that split's files are downloaded)."""
    where = source.path + (f" (subset {source.subset})" if source.subset else "")
    try:
        return datasets.load_dataset(source.path, source.subset, split=source.split, revision=source.revision)
    except ConnectionError as err:
        raise DataError(
            f"{where}: not a local folder, and the Hub cannot be reached ({err}); load it once where it can "
            "(the `datasets` cache is reused), or save it with save_to_disk and give that folder"
        ) from None
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(f"{where}: no such folder here, nor dataset on the Hub: {err}") from None
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"{where}: `datasets.load_dataset` cannot read it: {err}") from None


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
