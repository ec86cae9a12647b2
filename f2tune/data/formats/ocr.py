"""OCR JSONL: `{"image": "a.png", "lines": [{"text": "STOP", "quad": [x1, y1, ..., x4, y4]}]}`. `format: ocr`.

`<OCR_WITH_REGION>` (default) trains every line with its quadrilateral (`quads` + `labels`);
`<OCR>` trains the text only (`text`). Quads are 8 pixel coordinates, the corners clockwise from
top-left as OCR datasets write them (ICDAR, TextOCR, ...).

How `<OCR>` lines are joined: `Florence2Processor.post_process_generation` treats `<OCR>` as
`pure_text` (it only strips `<s>`/`</s>`), so the output format is whatever the model was trained
on, and the pretrained checkpoints put nothing between lines ("Line 1" + "Other line" comes out
as "Line 1Other line", see kijai/ComfyUI-Florence2 issue 9). The default `line_separator: ""`
keeps that format, so fine-tuning does not fight the pretrained habit; set it to "\\n" (or " ") to
teach line breaks instead, with a few more steps of training. An image with no text (`"lines": []`)
is a valid sample: the model learns to answer nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from f2tune.config import OcrSource
from f2tune.data.formats.lines import image_path, read_jsonl_objects
from f2tune.data.formats.structured import check_task_fields, numbers
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import Sample
from f2tune.errors import DataError
from f2tune.tasks.schema import Annotation


def read_ocr(source: OcrSource, problems: RecordProblems) -> list[Sample]:
    """Samples of one OCR JSONL file; bad lines go to `problems`."""

    def parse(record: dict[str, Any], origin: str, root: Path) -> Sample:
        image = image_path(record, origin, root)
        texts, quads = _lines(record, origin)
        if source.task == "<OCR>":
            reference: Annotation = {"text": source.line_separator.join(texts)}
        else:
            reference = {"quads": quads, "labels": texts}
        check_task_fields(source.task, reference, origin)  # a label its parser cannot read back: found now
        record_id = record.get("id", Path(origin).name)
        return Sample(
            id=str(record_id), image=image, prompt="", target="", origin=origin, task=source.task, reference=reference
        )

    return read_jsonl_objects(Path(source.path), problems, parse)


def _lines(record: dict[str, Any], origin: str) -> tuple[list[str], list[list[float]]]:
    if "lines" not in record:
        raise DataError(f'{origin}: missing field \'lines\' (a list of {{"text", "quad"}} objects)')
    lines = record["lines"]
    if not isinstance(lines, list):
        raise DataError(f"{origin}: 'lines' must be a list, got {type(lines).__name__}")
    texts, quads = [], []
    for index, line in enumerate(lines):
        what = f"lines[{index}]"
        if not isinstance(line, dict) or "text" not in line or "quad" not in line:
            raise DataError(f"{origin}: {what} must be an object with 'text' and 'quad', got {line!r}")
        text = line["text"]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{origin}: {what}.text must be a non-empty string, got {text!r}")
        texts.append(text.strip())
        quads.append(numbers(line["quad"], f"{what}.quad", origin, 8))
    return texts, quads
