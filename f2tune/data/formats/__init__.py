"""Dataset formats: each turns one recipe data source into a list of `Sample`s.

Readers of structured formats (COCO, RefCOCO, OCR, captions, VQA, structured JSONL) return samples
with `task` and `reference` and empty prompt/target: the text is built from the reference at load
time, after augmentation has moved the coordinates.
"""

from __future__ import annotations

from pathlib import Path

from f2tune.config import (
    CocoCaptionsSource,
    CocoDetectionSource,
    DataSource,
    Flickr30kEntitiesSource,
    HfDatasetSource,
    JsonlSource,
    KarpathyCaptionsSource,
    OcrSource,
    RefCocoSource,
    ShapesSource,
    StructuredJsonlSource,
    VqaSource,
)
from f2tune.data.formats.captions import read_coco_captions, read_karpathy_captions
from f2tune.data.formats.coco import read_coco_detection
from f2tune.data.formats.flickr_entities import read_flickr_entities
from f2tune.data.formats.hf_datasets import read_hf_dataset
from f2tune.data.formats.jsonl import read_jsonl
from f2tune.data.formats.ocr import read_ocr
from f2tune.data.formats.refcoco import read_refcoco
from f2tune.data.formats.structured import read_structured
from f2tune.data.formats.vqa import read_vqa
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.testing.shapes import shape_samples

_READERS = {
    CocoDetectionSource: read_coco_detection,
    RefCocoSource: read_refcoco,
    OcrSource: read_ocr,
    CocoCaptionsSource: read_coco_captions,
    KarpathyCaptionsSource: read_karpathy_captions,
    Flickr30kEntitiesSource: read_flickr_entities,
    VqaSource: read_vqa,
    StructuredJsonlSource: read_structured,
    HfDatasetSource: read_hf_dataset,
}


def source_name(source: DataSource) -> str:
    """The label a source gets in logs and sample ids."""
    if source.name:
        return source.name
    if isinstance(source, ShapesSource):
        return "shapes"
    if isinstance(source, RefCocoSource):
        return Path(source.refs).stem + (f"-{source.split}" if source.split else "")
    if isinstance(source, KarpathyCaptionsSource):
        return Path(source.path).stem + "-" + "+".join(source.splits)
    if isinstance(source, HfDatasetSource):
        return Path(source.path).name + (f"-{source.split}" if source.split else "")
    if isinstance(source, Flickr30kEntitiesSource):
        return f"{Path(source.path).name}-{source.split}"
    return Path(source.path).stem


def read_source(source: DataSource, problems: RecordProblems, split: str = "train") -> list[Sample]:
    """Read every record of one source of `split`; an empty result is an error whatever
    `on_bad_record` says."""
    if getattr(source, "images_without_objects", None) == "auto":
        source = source.model_copy(update={"images_without_objects": "skip" if split == "train" else "keep"})
    if isinstance(source, JsonlSource):
        samples = read_jsonl(Path(source.path), problems, default_prompt=source.prompt)
    elif isinstance(source, ShapesSource):
        samples = shape_samples(source.num_samples, source.seed, source.image_size, source_name(source))
    else:
        samples = _READERS[type(source)](source, problems)
    where = source_name(source) if isinstance(source, ShapesSource) else source.path
    if isinstance(source, RefCocoSource):
        where = source.refs + (f" (split {source.split})" if source.split else "")
    if isinstance(source, KarpathyCaptionsSource):
        where = f"{source.path} (splits {', '.join(source.splits)})"
    if isinstance(source, Flickr30kEntitiesSource):
        where = f"{source.path} (split {source.split})"
    if not samples:
        dropped = f" ({len(problems.found)} bad record(s) skipped)" if problems.found else ""
        raise DataError(f"{where}: the dataset is empty{dropped}")
    return samples
