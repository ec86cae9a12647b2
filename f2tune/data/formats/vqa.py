"""Visual question answering JSONL: `{"image", "question", "answers": [...]}`. `format: vqa`.

Florence-2 has no VQA task token, so the sample is free text (task ""): the prompt is the
question (`reference.query`) and the target the most common answer (`reference.text`; ties go to
the first given). Every answer stays in `reference.answers` for the metrics (VQA accuracy, ANLS).

Converting DocVQA (`train_v1.0.json`: `{"data": [{"questionId", "question", "image", "answers"}]}`),
with the JSONL beside the file so that `documents/xyz.png` resolves:

    import json
    data = json.load(open("docvqa/train/train_v1.0.json"))["data"]
    with open("docvqa/train/train.jsonl", "w") as out:
        for q in data:
            out.write(json.dumps({"id": q["questionId"], "image": q["image"],
                                  "question": q["question"], "answers": q["answers"]}) + "\\n")

Converting VQAv2 (questions and annotations files, COCO images):

    import json
    questions = json.load(open("v2_OpenEnded_mscoco_train2014_questions.json"))["questions"]
    answers = {a["question_id"]: a for a in json.load(open("v2_mscoco_train2014_annotations.json"))["annotations"]}
    with open("vqav2_train.jsonl", "w") as out:
        for q in questions:
            image = f"train2014/COCO_train2014_{q['image_id']:012d}.jpg"
            given = [a["answer"] for a in answers[q["question_id"]]["answers"]]
            out.write(json.dumps({"id": q["question_id"], "image": image,
                                  "question": q["question"], "answers": given}) + "\\n")
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from f2tune.config import VqaSource
from f2tune.data.formats.lines import image_path, read_jsonl_objects, text_field
from f2tune.data.problems import RecordProblems
from f2tune.data.sample import RenderedImage, Sample
from f2tune.errors import DataError
from f2tune.tasks.schema import Annotation

TASK_LIKE = re.compile(r"^<[A-Z][A-Z_]*>")


def read_vqa(source: VqaSource, problems: RecordProblems) -> list[Sample]:
    """Samples of one VQA JSONL file; bad lines go to `problems`."""
    return read_jsonl_objects(Path(source.path), problems, _parse)


def _parse(record: dict[str, Any], origin: str, root: Path) -> Sample:
    image = image_path(record, origin, root)
    question = text_field(record, "question", origin).strip()
    if TASK_LIKE.match(question):
        raise DataError(
            f"{origin}: a question must not start with a task token (the processor would run that task): {question!r}"
        )
    answers = record.get("answers")
    if not (isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers)):
        raise DataError(f"{origin}: 'answers' must be a non-empty list of non-empty strings, got {answers!r}")
    record_id = record.get("id", Path(origin).name)
    return question_sample(str(record_id), image, question, answers, origin)


def question_sample(
    sample_id: str, image: Path | RenderedImage, question: str, answers: list[str], origin: str
) -> Sample:
    """A free-text sample that trains the most common of `answers` and keeps them all for the metrics."""
    answers = [a.strip() for a in answers]
    reference: Annotation = {"query": question, "text": most_common(answers), "answers": answers}
    return Sample(id=sample_id, image=image, prompt="", target="", origin=origin, task="", reference=reference)


def most_common(answers: list[str]) -> str:
    """The answer given most often; on a tie, the first given (Counter keeps insertion order)."""
    return Counter(answers).most_common(1)[0][0]
