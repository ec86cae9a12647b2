"""Recipe data sources: one class per dataset format, told apart by their `format:` key."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from f2tune.config.base import Section
from f2tune.tasks.tokens import TASKS_WITH_INPUT, TASKS_WITHOUT_INPUT

CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
"""Tasks whose answer is a caption, of which a dataset may hold several per image."""
OBJECT_TASKS = ("<OD>", "<DENSE_REGION_CAPTION>")
"""Tasks whose answer is a list of named boxes, which a dataset's objects column can train."""
ImagesWithoutObjects = Literal["auto", "keep", "skip"]
IMAGES_WITHOUT_OBJECTS = (
    "Images with no object to detect (crowd regions aside). auto: kept in data.val and data.test, where "
    "any box predicted on them is a false detection, as COCO's evaluation counts it; left out of data.train "
    "(detectron2's default). keep: also train on them, with an empty answer (a dataset of mostly negatives); "
    "skip: leave them out everywhere."
)
AnnotationField = Literal["text", "answers", "boxes", "labels", "polygons", "quads", "query", "region"]
"""The `Annotation` fields a dataset's columns can hold (as `structured_jsonl` records' keys do)."""
ANNOTATION_FIELDS: tuple[str, ...] = get_args(AnnotationField)


class Source(Section):
    """What every data source has besides its format's own keys."""

    weight: float | None = Field(
        None,
        gt=0,
        description="Share of each training epoch relative to the other sources' weights (1 where unset); "
        "with no weight on any source, every sample once per epoch.",
    )
    name: str | None = Field(None, description="Label used in logs and sample ids; defaults to the file name.")


class JsonlSource(Source):
    """A JSONL file: one `{"image", "prompt"|"prefix", "target"|"suffix"}` object per line."""

    format: Literal["jsonl"]
    path: str = Field(description="JSONL file; image paths inside are relative to it.")
    prompt: str | None = Field(None, description="Prompt for records that carry none (e.g. <CAPTION>).")


class ShapesSource(Source):
    """Coloured shapes drawn in code: offline data for the demo, tests and benchmarks."""

    format: Literal["shapes"]
    num_samples: int = Field(256, gt=0)
    seed: int = 0
    image_size: int = Field(96, ge=32)


class CocoDetectionSource(Source):
    """COCO instances JSON + image folder: one detection sample per image (or per object)."""

    format: Literal["coco_detection"]
    path: str = Field(description="COCO instances JSON (images, annotations, categories).")
    image_root: str = Field(description="Folder that the images' file_name entries are relative to.")
    task: Literal["<OD>", "<DENSE_REGION_CAPTION>", "<REGION_TO_CATEGORY>"] = Field(
        "<OD>", description="<REGION_TO_CATEGORY> gives one sample per object (its box -> category)."
    )
    images_without_objects: ImagesWithoutObjects = Field("auto", description=IMAGES_WITHOUT_OBJECTS)


class RefCocoSource(Source):
    """RefCOCO/+/g: COCO instances JSON + a refs JSON (converted once from refs(*).p)."""

    format: Literal["refcoco"]
    path: str = Field(description="COCO instances JSON the refs point into.")
    refs: str = Field(description="Refs as JSON: a list of {ref_id, ann_id, image_id, split, sentences}.")
    image_root: str = Field(description="Folder that the images' file_name entries are relative to.")
    split: str | None = Field(None, description="Keep refs of this split only (train, val, testA...).")
    task: Literal[
        "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REFERRING_EXPRESSION_SEGMENTATION>"
    ] = "<OPEN_VOCABULARY_DETECTION>"


class OcrSource(Source):
    """JSONL: `{"image", "lines": [{"text", "quad": [8 numbers]}]}` per line."""

    format: Literal["ocr"]
    path: str = Field(description="JSONL file; image paths inside are relative to it.")
    task: Literal["<OCR_WITH_REGION>", "<OCR>"] = "<OCR_WITH_REGION>"
    line_separator: str = Field("", description="<OCR> only: joins the lines; pretrained Florence-2 uses none.")


class CaptionsSource(Source):
    """What both caption formats have: the caption task, and one sample per caption or per image."""

    task: Literal["<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>"] = "<CAPTION>"
    one_per_image: bool = Field(
        False,
        description="One sample per image with every caption in reference.answers; true unless set in data.val "
        "and data.test (as caption metrics score), refused in data.train.",
    )


class CocoCaptionsSource(CaptionsSource):
    """COCO captions JSON (images, annotations with `caption`) + image folder."""

    format: Literal["coco_captions"]
    path: str = Field(description="COCO captions JSON.")
    image_root: str = Field(description="Folder that the images' file_name entries are relative to.")


class KarpathyCaptionsSource(CaptionsSource):
    """Karpathy's caption splits as released (`dataset_coco.json`, `dataset_flickr30k.json`): one
    file holds every split, each image with its `split`, `filepath`/`filename` and `sentences`."""

    format: Literal["karpathy_captions"]
    path: str = Field(description="The split file, e.g. dataset_coco.json.")
    image_root: str = Field(
        description="Folder that each image's filepath/filename is relative to (COCO: the folder holding "
        "train2014/ and val2014/)."
    )
    splits: list[Literal["train", "restval", "val", "test"]] = Field(
        min_length=1, description="Splits to read: [train, restval] for training, [val] or [test] to evaluate."
    )


class Flickr30kEntitiesSource(Source):
    """Flickr30k Entities as released (Sentences/, Annotations/, split lists) + the Flickr30k images:
    one phrase-grounding sample per caption."""

    format: Literal["flickr30k_entities"]
    path: str = Field(description="Folder holding Sentences/, Annotations/ and train.txt, val.txt, test.txt.")
    image_root: str = Field(description="Folder of the Flickr30k images, <image id>.jpg each (flickr30k-images/).")
    split: Literal["train", "val", "test"] = Field(description="The split list whose images are read.")


class VqaSource(Source):
    """JSONL: `{"image", "question", "answers": [...]}` per line (DocVQA, VQAv2 converted)."""

    format: Literal["vqa"]
    path: str = Field(description="JSONL file; image paths inside are relative to it.")


class StructuredJsonlSource(Source):
    """JSONL of structured answers in pixels: `{"image", "task", "boxes", "labels", ...}` per line."""

    format: Literal["structured_jsonl"]
    path: str = Field(description="JSONL file; image paths inside are relative to it.")


class HfDatasetSource(Source):
    """A Hugging Face `datasets` dataset (needs the `datasets` extra): Hub id, data folder or save_to_disk folder."""

    format: Literal["hf_dataset"]
    path: str = Field(
        description="Hub id (user/name), a folder `datasets.load_dataset` reads (parquet, JSON or CSV files; "
        "images with a metadata.jsonl), or a folder written by save_to_disk."
    )
    split: str | None = Field(None, description="Split to read; required when there are several.")
    subset: str | None = Field(None, description="Configuration of a Hub dataset that has several (its `name`).")
    revision: str | None = Field(None, description="Hub branch, tag or commit of the dataset.")
    image_column: str = "image"
    image_root: str | None = Field(
        None,
        description="Folder that relative image paths in image_column start from (datasets that name image "
        "files, such as COCO's, rather than hold them); default the working directory.",
    )
    prompt_column: str | None = Field("prompt", description="null: every row uses `prompt`.")
    prompt: str | None = Field(None, description="Prompt for rows without one (or when prompt_column is null).")
    target_column: str = Field(
        "target",
        description="Target text; or a list: the answers to a free-text question, or the captions of a caption task.",
    )
    one_per_image: bool = Field(
        False,
        description="Caption lists: one sample per image with every caption as a reference; true unless set in "
        "data.val and data.test (as caption metrics score), refused in data.train.",
    )
    objects_column: str | None = Field(
        None,
        description="Detection rows: a column of objects (boxes and categories, as the Hub's detection datasets "
        "hold them) read as <OD> samples, or the task in `prompt`; prompt and target columns are then unused.",
    )
    annotation_columns: dict[AnnotationField, str] | None = Field(
        None,
        description="Structured rows: the column holding each annotation field (boxes, labels, polygons, quads, "
        "query, region, text, answers; in pixels, as structured_jsonl's keys), for the task in `prompt` "
        "(grounding, referring expressions, segmentation, regions); a field of a struct column, or of each "
        "record of a list of them, as `column.field`; prompt and target columns are then unused.",
    )
    box_format: Literal["xywh", "xyxy"] | None = Field(
        None,
        description="With objects_column, or boxes/region in annotation_columns: xywh (COCO's x, y, width, "
        "height) or xyxy, in pixels.",
    )
    box_key: str = Field("bbox", description="With objects_column: the objects' key holding their boxes.")
    label_key: str = Field(
        "category", description="With objects_column: the objects' key holding their names or ClassLabel ids."
    )
    images_without_objects: ImagesWithoutObjects = Field(
        "auto", description=f"With objects_column: rows without objects. {IMAGES_WITHOUT_OBJECTS}"
    )

    @model_validator(mode="after")
    def _row_columns_are_complete(self) -> HfDatasetSource:
        if self.images_without_objects != "auto" and self.objects_column is None:
            raise ValueError("images_without_objects applies to detection rows: set objects_column, or leave it out")
        if self.annotation_columns is not None:
            return self._check_annotation_columns()
        if self.objects_column is None:
            return self
        if self.box_format is None:
            raise ValueError(
                "objects_column needs box_format: xywh (x, y, width, height, as COCO and cppe-5 write boxes) or "
                "xyxy (x1, y1, x2, y2); datasets use both, so there is no default"
            )
        if self.prompt not in (None, *OBJECT_TASKS):
            raise ValueError(
                f"with objects_column, prompt is the task: {' or '.join(OBJECT_TASKS)}, got {self.prompt!r}"
            )
        return self

    def _check_annotation_columns(self) -> HfDatasetSource:
        if self.objects_column is not None:
            raise ValueError("give objects_column or annotation_columns, not both")
        if not self.annotation_columns:
            raise ValueError(f"annotation_columns names no column; its keys are fields: {', '.join(ANNOTATION_FIELDS)}")
        tokens = TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT
        if self.prompt not in tokens:
            raise ValueError(
                f"with annotation_columns, prompt is the task, one of Florence-2's: {', '.join(tokens)}; "
                f"got {self.prompt!r}"
            )
        if self.box_format is None and {"boxes", "region"} & set(self.annotation_columns):
            raise ValueError(
                "boxes or region in annotation_columns need box_format: xywh (x, y, width, height, as COCO writes "
                "boxes) or xyxy (x1, y1, x2, y2); datasets use both, so there is no default"
            )
        return self


DataSource = Annotated[
    JsonlSource
    | ShapesSource
    | CocoDetectionSource
    | RefCocoSource
    | OcrSource
    | CocoCaptionsSource
    | KarpathyCaptionsSource
    | Flickr30kEntitiesSource
    | VqaSource
    | StructuredJsonlSource
    | HfDatasetSource,
    Field(discriminator="format"),
]
