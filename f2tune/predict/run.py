"""Predict on image files: one JSONL line and one picture per image."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.progress import track
from torch import nn
from transformers import Florence2Processor

from f2tune.data.collate import overlong_input
from f2tune.data.images import load_image
from f2tune.errors import DataError, RecipeError, first_few
from f2tune.eval.generate import Decoding, Generation, generate
from f2tune.eval.scores import parse_generation, special_ids
from f2tune.export.atomic import atomic_folder, check_replaceable
from f2tune.log import say, warn
from f2tune.model.attention import attention_for, use_attention
from f2tune.predict.decoding import decoding_for
from f2tune.predict.draw import COORDINATES, draw_annotation
from f2tune.predict.inputs import image_files, image_sizes, picture_names
from f2tune.predict.load import inference_device, load_for_inference, resolve_source
from f2tune.tasks import CUSTOM, TASKS, TaskSpec, build_prompt, task_of
from f2tune.tasks.schema import Annotation
from f2tune.tasks.tokens import close_tokens


@dataclass
class PredictRequest:
    """What to ask: a task token with its input (`text` or `region`), or a free-text `prompt`."""

    task: str | None = None
    """A task token; None: `<CAPTION>`, or no task at all with a free-text `prompt` (the two exclude each other)."""
    text: str | None = None
    region: list[float] | None = None
    prompt: str | None = None

    def spec(self) -> TaskSpec:
        """The task asked for, its inputs checked against it."""
        if self.prompt is not None:
            if self.task is not None:  # one of them would be dropped unsaid
                raise DataError("--prompt is a whole free-text prompt and --task a task token: give one of them")
            return self._checked(CUSTOM)
        task = "<CAPTION>" if self.task is None else self.task
        if task not in TASKS or not task:
            known = ", ".join(t for t in TASKS if t)
            close = close_tokens(f"<{task.strip('<>').upper()}>")  # `<od>` and `od` mean <OD>
            raise DataError(f"unknown task {task!r}{close}; known tasks: {known} (or use --prompt for free text)")
        return self._checked(TASKS[task])

    def _checked(self, spec: TaskSpec) -> TaskSpec:
        """Checked before the model loads, in the options' terms: the prompt builder would refuse
        most of these only after it, naming the data fields it reads (`query`), and an input the
        task takes none of would be dropped unsaid."""
        if self.prompt is not None and self.text is not None:
            raise DataError("--prompt is the whole prompt and --text a task's text input: give one of them")
        for flag, value in (("--text", self.text), ("--prompt", self.prompt)):
            if value is not None and not value.strip():
                raise DataError(f"{flag} is empty: give the text itself, quoted (e.g. {flag} 'a red car')")
        given = {"query": self.text if self.prompt is None else self.prompt, "region": self.region}
        needed = {"query": "--text TEXT", "region": "--region x1,y1,x2,y2"}
        if spec.input in needed and given[spec.input] is None:
            raise DataError(f"{spec.name} takes an input: give it with {needed[spec.input]}")
        for kind, flag in (("query", "--text"), ("region", "--region")):
            if spec.input != kind and given[kind] is not None:
                raise DataError(f"{flag} is not an input of {spec.name}, which takes {_input_of(spec)}")
        if self.region is not None and not (len(self.region) == 4 and all(map(math.isfinite, self.region))):
            raise DataError(f"--region must be 4 finite numbers x1,y1,x2,y2 in pixels, got {_listed(self.region)}")
        if self.prompt is not None:
            _check_prompt(self.prompt)
        elif self.text is not None:
            _check_text(spec, self.text)
        return spec

    def annotation(self) -> Annotation:
        given: Annotation = {}
        if self.prompt is not None:
            given["query"] = self.prompt
        if self.text is not None:
            given["query"] = self.text
        if self.region is not None:
            given["region"] = self.region
        return given


def predict(
    source: str | Path,
    images: list[Path],
    request: PredictRequest,
    out: Path,
    batch_size: int = 4,
    dtype: str = "float32",
    device: str = "auto",
    max_new_tokens: int | None = None,
    num_beams: int | None = None,
) -> Path:
    """Write `out/predictions.jsonl` and a picture per image, `out/<image stem>.png` (atomically: all
    or nothing), with the model on `device` (`auto`: a GPU when there is one) in `dtype`. `images`
    may name folders: their image files are read. Files that are no image stop the run before the
    model loads; one whose data is cut short (found only when decoded) gets an `error` line instead
    of a result, and the others are kept. Decoding: `max_new_tokens` and `num_beams` where given,
    else as the run's validation decodes (`f2tune.predict.decoding`)."""
    if batch_size < 1:  # else no batch (or range()'s error after the model loaded)
        raise RecipeError(f"--batch-size must be at least 1, got {batch_size}")
    spec = request.spec()
    decoding = decoding_for(spec, source, max_new_tokens, num_beams)
    source = resolve_source(source)
    check_replaceable(out, "predict")
    target = inference_device(device)
    images = image_files([Path(p) for p in images])
    sizes = image_sizes(images)
    if request.region is not None:
        _check_region(request.region, images, sizes)
    pictures_named = picture_names(images)
    model, processor = load_for_inference(source, dtype)
    use_attention(model, attention_for(target.type, dtype == "bfloat16"))
    model.to(target)
    ids = special_ids(processor.tokenizer)
    unparsed: list[str] = []
    unreadable: list[str] = []
    with atomic_folder(out, "predict") as staging, (staging / "predictions.jsonl").open("w") as lines:
        batches = range(0, len(images), batch_size)
        for start in track(batches, f"predict: {len(images)} images", console=Console(stderr=True)):
            chosen = list(zip(images[start : start + batch_size], pictures_named[start : start + batch_size]))
            decoded = [_decoded(path) for path, _ in chosen]
            pictures = [picture for picture in decoded if not isinstance(picture, str)]
            prompts = [build_prompt(spec, request.annotation(), img.size) for img in pictures]
            answers = iter(zip(prompts, _generate(model, processor, prompts, pictures, decoding, spec)))
            for (path, name), picture in zip(chosen, decoded):
                if isinstance(picture, str):
                    unreadable.append(picture)
                    lines.write(json.dumps({"image": str(path), "error": picture}) + "\n")
                    continue
                prompt, generation = next(answers)
                result = parse_generation(spec, generation, picture.size, ids)
                record = {
                    "image": str(path),
                    "task": spec.token,
                    "prompt": prompt,
                    "text": generation.text,
                    "result": result,
                    "picture": name,
                }
                lines.write(json.dumps(record) + "\n")
                shown = {**request.annotation(), **result}
                if _no_region_in(spec, result, generation.text):
                    unparsed.append(generation.text)
                    shown["text"] = f"no region in the answer: {generation.text}"
                draw_annotation(picture, shown, title=prompt).save(staging / name)
    if unparsed:
        warn(
            f"predict: {len(unparsed)} of {len(images)} answers to {spec.token} held text but no region that "
            f"task's parser reads, e.g. {unparsed[0][:80]!r}: was the model trained on {spec.token}, and long "
            "enough? Their results are empty; their pictures show the text"
        )
    if unreadable:
        warn(
            f"predict: {len(unreadable)} of {len(images)} images could not be decoded and have no result (their "
            f"lines in predictions.jsonl hold the error): {first_few(unreadable, '; ')}"
        )
    say(f"predictions: {out / 'predictions.jsonl'}; pictures: {out}/*.png")
    return out


def _decoded(path: Path) -> Image.Image | str:
    """The image, or why it cannot be decoded: its header was read before the model loaded, and a
    file whose data is cut short fails only here, where stopping would lose every earlier result."""
    try:
        return load_image(Path(path), str(path))
    except DataError as err:
        return str(err)


def _generate(
    model: nn.Module,
    processor: Florence2Processor,
    prompts: list[str],
    pictures: list[Image.Image],
    decoding: Decoding,
    spec: TaskSpec,
) -> list[Generation]:
    """The generations for one batch of pictures (none for an empty batch)."""
    if not pictures:
        return []
    inputs = processor(text=prompts, images=pictures, return_tensors="pt", padding="longest")
    _check_input_fits(inputs["input_ids"].shape[1], model, processor)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    return generate(model, processor, inputs, decoding, spec.answers_with_boxes)


def _no_region_in(spec: TaskSpec, result: Annotation, text: str) -> bool:
    """Whether a task that answers with regions got text without any (an image with nothing to
    find is answered with no text at all): the task's parse keeps none of it."""
    regions = any(result.get(key) for key in COORDINATES)
    return spec.answers_with_regions and not regions and bool(text.strip())


def _check_input_fits(length: int, model: nn.Module, processor: Florence2Processor) -> None:
    """The prompt (`--prompt` or `--text`, with the image's tokens) must fit the encoder's positions: past them
    the model fails with an index error deep in its embedding."""
    positions = model.config.text_config.max_position_embeddings
    if length > positions:
        raise DataError(
            overlong_input("--prompt/--text", length, processor.image_processor.image_seq_length, positions)
        )


def _check_prompt(prompt: str) -> None:
    """`--prompt` is free text: a task token in it is refused as a data reader refuses it, and one
    that opens it names the task to give instead."""
    try:
        spec = task_of(prompt)
    except DataError as err:
        raise DataError(f"--prompt: {err}") from None
    if spec is not CUSTOM:
        given = f" with {_input_of(spec)}" if spec.input != "none" else ""
        raise DataError(f"--prompt {prompt!r} starts with the task token {spec.token}: give --task {spec.token}{given}")


def _check_text(spec: TaskSpec, text: str) -> None:
    """A task token inside `--text` (`a cat <OD>`) would be read by the processor as a second task."""
    try:
        task_of(spec.token + text)
    except DataError as err:
        raise DataError(f"--text: {err}") from None


def _input_of(spec: TaskSpec) -> str:
    """The option that gives `spec` its input, for messages."""
    if spec is CUSTOM:
        return "--prompt alone"
    return {"none": "none", "query": "--text", "region": "--region"}[spec.input]


def _check_region(region: list[float], images: list[Path], sizes: list[tuple[int, int]]) -> None:
    """`--region` in pixels of every image: a region past an image's edge would be clamped to it,
    a different region than asked (typically pixels of the image before it was resized)."""
    x1, y1, x2, y2 = region
    if x2 < x1 or y2 < y1:
        raise DataError(f"--region {_listed(region)}: x2 < x1 or y2 < y1; a region is x1,y1,x2,y2 in pixels")
    outside = [
        f"{path} ({width}x{height})"
        for path, (width, height) in zip(images, sizes)
        if min(region) < 0 or x2 > width or y2 > height
    ]
    if outside:
        raise DataError(
            f"--region {_listed(region)} lies outside {first_few(outside)}: "
            "a region is x1,y1,x2,y2 in the pixels of every image given"
        )


def _listed(region: list[float]) -> str:
    return ",".join(f"{value:g}" for value in region)
