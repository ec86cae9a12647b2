"""Predict on image files: one JSONL line and one picture per image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import track
from torch import nn
from transformers import Florence2Processor

from f2tune.data.collate import overlong_input
from f2tune.data.images import load_image
from f2tune.errors import DataError, first_few
from f2tune.eval.generate import generate
from f2tune.eval.scores import parse_generation, special_ids
from f2tune.export.atomic import atomic_folder, check_replaceable
from f2tune.log import say
from f2tune.model.attention import attention_for, use_attention
from f2tune.predict.draw import draw_annotation
from f2tune.predict.inputs import image_files, image_sizes, picture_names
from f2tune.predict.load import inference_device, load_for_inference
from f2tune.tasks import CUSTOM, TASKS, TaskSpec, build_prompt
from f2tune.tasks.schema import Annotation
from f2tune.tasks.tokens import close_tokens


@dataclass
class PredictRequest:
    """What to ask: a task token with its input (`text` or `region`), or a free-text `prompt`."""

    task: str = "<CAPTION>"
    text: str | None = None
    region: list[float] | None = None
    prompt: str | None = None

    def spec(self) -> TaskSpec:
        """The task asked for, its inputs checked against it."""
        if self.prompt is not None:
            spec = CUSTOM
        elif self.task in TASKS and self.task:
            spec = TASKS[self.task]
        else:
            known = ", ".join(t for t in TASKS if t)
            raise DataError(
                f"unknown task {self.task!r}{close_tokens(self.task)}; known tasks: {known} "
                "(or use --prompt for free text)"
            )
        self._check_inputs(spec)
        return spec

    def _check_inputs(self, spec: TaskSpec) -> None:
        """Checked before the model loads: without this a grounding task without `--text` fails
        naming the data field (`query`), and an input the task takes none of is dropped unsaid."""
        if self.prompt is not None and self.text is not None:
            raise DataError("--prompt is the whole prompt and --text a task's text input: give one of them")
        given = {"query": self.text if self.prompt is None else self.prompt, "region": self.region}
        needed = {"query": "--text TEXT", "region": "--region x1,y1,x2,y2"}
        if spec.input in needed and given[spec.input] is None:
            raise DataError(f"{spec.name} takes an input: give it with {needed[spec.input]}")
        for kind, flag in (("query", "--text"), ("region", "--region")):
            if spec.input != kind and given[kind] is not None:
                raise DataError(f"{flag} is not an input of {spec.name}, which takes {_input_of(spec)}")

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
    source: str,
    images: list[Path],
    request: PredictRequest,
    out: Path,
    batch_size: int = 4,
    dtype: str = "float32",
    device: str = "auto",
) -> Path:
    """Write `out/predictions.jsonl` and a picture per image, `out/<image stem>.png` (atomically: all
    or nothing), with the model on `device` (`auto`: a GPU when there is one) in `dtype`. `images`
    may name folders: their image files are read."""
    spec = request.spec()
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
    with atomic_folder(out, "predict") as staging, (staging / "predictions.jsonl").open("w") as lines:
        batches = range(0, len(images), batch_size)
        for start in track(batches, f"predict: {len(images)} images", console=Console(stderr=True)):
            paths, names = images[start : start + batch_size], pictures_named[start : start + batch_size]
            pictures = [load_image(Path(p), str(p)) for p in paths]
            prompts = [build_prompt(spec, request.annotation(), img.size) for img in pictures]
            inputs = processor(text=prompts, images=pictures, return_tensors="pt", padding="longest")
            _check_input_fits(inputs["input_ids"].shape[1], model, processor)
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            generations = generate(model, processor, inputs, spec, spec.answers_with_boxes)
            for path, name, picture, prompt, generation in zip(paths, names, pictures, prompts, generations):
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
                drawn = draw_annotation(picture, {**request.annotation(), **result}, title=prompt)
                drawn.save(staging / name)
    say(f"predictions: {out / 'predictions.jsonl'}; pictures: {out}/*.png")
    return out


def _check_input_fits(length: int, model: nn.Module, processor: Florence2Processor) -> None:
    """The prompt (`--prompt` or `--text`, with the image's tokens) must fit the encoder's positions: past them
    the model fails with an index error deep in its embedding."""
    positions = model.config.text_config.max_position_embeddings
    if length > positions:
        raise DataError(
            overlong_input("--prompt/--text", length, processor.image_processor.image_seq_length, positions)
        )


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
