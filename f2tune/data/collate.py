"""Batching: the processor builds image + prompt inputs, targets become labels with padding = -100."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from PIL import Image
from torch.utils.data import default_collate
from transformers import Florence2Processor

from f2tune.data.decoded import DecodedImages
from f2tune.data.evaluation_shares import is_padding
from f2tune.data.problems import SKIP_HINT
from f2tune.data.shared_flag import SharedFlag
from f2tune.errors import DataError

IGNORE_INDEX = -100
"""Label value that cross-entropy skips: padding must never be a training target."""

DATA_COUNTS = ("skipped_records", "truncated_targets", "dropped_annotations")
"""What the collator counts per batch, logged per epoch as `data/<name>`."""


class Florence2Collator:
    """Turns dataset items into model inputs plus the bookkeeping the training loop logs.

    The processor inserts the image tokens and rewrites task tokens into their sentences; it builds
    no labels, so targets are tokenized here (with `<s>`/`</s>`, as Florence-2 was trained), cut to
    `max_target_tokens` keeping the final `</s>`, and right-padded with `IGNORE_INDEX`. Text and
    pixels are made apart (`STAND_IN`), so that the pixels can be stacked where the batch has to go
    (`image_pixels`) or not made at all.

    Whatever the training step would otherwise have to read back from the device is computed here,
    in the loader workers, while the device is busy with earlier batches: each target's length
    (`target_lengths`, which decide how the loss splits the batch) and, with `digest_images`, each
    image's `image_digests` (the image feature cache's key, `image_digest`).

    While `images_cached` is set (the training process's feature cache holds every training image,
    `ImageFeatureCache.complete`), the images are not turned into pixels: `pixel_values` is None and
    the decoded images travel instead (`decoded_images`, `DecodedImages`), for the cache to make
    pixels of any it lacks after all. The processor's resizing, normalizing and stacking are two
    thirds of a worker's time per image.
    """

    def __init__(
        self,
        processor: Florence2Processor,
        max_target_tokens: int,
        digest_images: bool = False,
        images_cached: SharedFlag | None = None,
        max_input_tokens: int | None = None,
        on_bad_record: str = "error",
    ) -> None:
        self.processor = processor
        self.max_target_tokens = max_target_tokens
        self.digest_images = digest_images
        self.images_cached = images_cached
        self.max_input_tokens = max_input_tokens
        """The encoder's positions (`max_position_embeddings`); longer inputs are refused (or, with
        `on_bad_record: skip`, dropped): the model has no position for them."""
        self.on_bad_record = on_bad_record

    def __call__(self, items: list[dict[str, Any] | None]) -> dict[str, Any]:
        items = [item for item in items if not is_padding(item)]  # another process evaluates the sample
        kept = [item for item in items if item is not None]
        if not kept:
            return self.empty_batch(len(items))
        images = [item["image"] for item in kept]
        skip_pixels = self.digest_images and self.images_cached is not None and bool(self.images_cached)
        inputs = self.processor(
            text=[item["prompt"] for item in kept],
            images=[STAND_IN] * len(kept),
            return_tensors="pt",
            padding="longest",
            **STAND_IN_UNTOUCHED,
        )
        overlong = self._overlong_inputs(kept, inputs["attention_mask"])
        if overlong:  # dropped under `skip` (else raised): the batch again without them
            return self([None if item is None or id(item) in overlong else item for item in items])
        labels, lengths, truncated = self.encode_targets([item["target"] for item in kept])
        batch = {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "pixel_values": None if skip_pixels else image_pixels(self.processor, images),
            "labels": labels,
            "target_lengths": lengths,
            "ids": [item["id"] for item in kept],
            "prompts": [item["prompt"] for item in kept],
            "targets": [item["target"] for item in kept],
            "tasks": [item.get("task", "") for item in kept],
            "references": [item.get("reference") for item in kept],
            "image_sizes": [image.size for image in images],
            "truncated_targets": truncated,
            "dropped_annotations": sum(item.get("dropped_annotations", 0) for item in kept),
            "skipped_records": len(items) - len(kept),
        }
        if self.digest_images:
            batch["image_digests"] = [image_digest(image) for image in images]
        if skip_pixels:
            batch["decoded_images"] = DecodedImages(images)
        return batch

    def empty_batch(self, skipped: int) -> dict[str, Any]:
        """A batch whose every record was dropped (`on_bad_record: skip`): no samples, its counts,
        and a `stand_in` of one blank image with an empty prompt and target, model inputs only.
        Under DDP or FSDP a process without a sample must still run a forward and backward, or the
        others wait for its gradients forever: it trains on the stand-in's loss times zero."""
        labels, lengths, _ = self.encode_targets([""])
        inputs = self.processor(text=[""], images=[STAND_IN], return_tensors="pt", **STAND_IN_UNTOUCHED)
        stand_in = {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "pixel_values": image_pixels(self.processor, [STAND_IN]),
            "labels": labels,
            "target_lengths": lengths,
        }
        return {**dict.fromkeys(DATA_COUNTS, 0), "skipped_records": skipped, "stand_in": stand_in}

    def _overlong_inputs(self, items: list[dict[str, Any]], attention_mask: torch.Tensor) -> set[int]:
        """`id()` of the items whose prompt and image tokens exceed the encoder's positions."""
        if self.max_input_tokens is None:
            return set()
        lengths = attention_mask.sum(dim=1).tolist()
        overlong = {id(item) for item, length in zip(items, lengths) if length > self.max_input_tokens}
        if overlong and self.on_bad_record != "skip":
            item, length = next((i, n) for i, n in zip(items, lengths) if id(i) in overlong)
            image_tokens = self.processor.image_processor.image_seq_length
            message = overlong_input(item.get("origin", item["id"]), length, image_tokens, self.max_input_tokens)
            raise DataError(f"{message}\n{SKIP_HINT}")
        return overlong

    def encode_targets(self, targets: list[str]) -> tuple[torch.Tensor, list[int], int]:
        """Label tensor (batch, longest), each target's token count, and how many targets were
        longer than the limit."""
        tokenizer = self.processor.tokenizer
        encoded = tokenizer(targets, add_special_tokens=True)["input_ids"]
        truncated = sum(len(ids) > self.max_target_tokens for ids in encoded)
        cut = [
            ids if len(ids) <= self.max_target_tokens else ids[: self.max_target_tokens - 1] + ids[-1:]
            for ids in encoded
        ]
        labels = torch.full((len(cut), max(map(len, cut))), IGNORE_INDEX, dtype=torch.long)
        for row, ids in enumerate(cut):
            labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return labels, [len(ids) for ids in cut], truncated


def input_lengths(processor: Florence2Processor, prompts: list[str]) -> list[int]:
    """Tokens of each prompt's model input (the image's tokens, the prompt as the processor writes it)."""
    inputs = processor(text=prompts, images=[STAND_IN] * len(prompts), padding="longest", **STAND_IN_UNTOUCHED)
    return [sum(mask) for mask in inputs["attention_mask"]]


def overlong_input(where: str, length: int, image_tokens: int, positions: int) -> str:
    """The problem of an input beyond the encoder's positions, for the sample at `where`."""
    return (
        f"{where}: the prompt takes {length - image_tokens} tokens beside the image's {image_tokens}, {length} "
        f"in all, beyond the {positions} positions of the model's encoder: shorten it"
    )


def target_limit_problem(max_target_tokens: int, positions: int) -> str | None:
    """Why `data.max_target_tokens` cannot be, for a decoder of `positions`, or None."""
    if max_target_tokens <= positions:
        return None
    return (
        f"data.max_target_tokens is {max_target_tokens}, but the model's decoder has {positions} positions: "
        f"set data.max_target_tokens to {positions} or less"
    )


def image_pixels(processor: Florence2Processor, images: list[Image.Image]) -> torch.Tensor:
    """The image processor's pixels of `images`, stacked by `default_collate`, which in a loader
    worker stacks straight into shared memory, where the batch must be for its trip to the training
    process. The processor stacks into ordinary memory, which torch then copies into shared memory:
    for eight 768x768 images 34 ms of stacking and 46 ms of copying."""
    return default_collate(processor.image_processor(images, return_tensors=None)["pixel_values"])


STAND_IN = Image.new("RGB", (32, 32))
"""What the processor gets in place of each image when it makes the text inputs: it writes the
prompt's image tokens, which depend only on the model's image size (`num_image_tokens`), not on the
image, so the text inputs are those of the real image."""

STAND_IN_UNTOUCHED = {"do_resize": False, "do_center_crop": False, "do_rescale": False, "do_normalize": False}
"""The image processor's switches that leave `STAND_IN` as it is (its pixels are thrown away)."""


def image_digest(image: Image.Image) -> str:
    """The image feature cache's key for one decoded image: samples that show the same image share
    one entry, and an image that changed is another. Hashed before the processor, which is the same
    for every image of a run, so equal images give equal pixels: a 640x480 photo's 0.9 MB of RGB
    bytes, where its 768x768 float pixels (7 MB) took 8.2 ms, about as long as the processor's
    resizing and normalizing of it (one loader worker, benchmarks/README.md). SHA-256, which CPUs
    with SHA extensions hash faster than BLAKE2b: 0.66 vs 1.19 ms per photo here (EPYC); BLAKE2b was
    a fifth of a worker's time per image in the epochs when it sends no pixels."""
    digest = hashlib.sha256(f"f2tune:image {image.mode} {image.width}x{image.height} ".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
