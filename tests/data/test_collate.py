"""Collation: labels are padded with -100 and padding never reaches the loss; truncation is counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from f2tune.data.collate import DATA_COUNTS, IGNORE_INDEX, Florence2Collator, image_digest
from f2tune.data.shared_flag import SharedFlag
from f2tune.errors import DataError
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.testing.shapes import shape_samples


def items(targets: list[str]) -> list[dict]:
    samples = shape_samples(len(targets), seed=7)
    return [
        {"id": s.id, "image": s.image.render(), "prompt": "<CAPTION>", "target": t} for s, t in zip(samples, targets)
    ]


def test_labels_are_padded_with_ignore_index(processor):
    batch = Florence2Collator(processor, 64)(items(["a red circle", "a blue square next to a green triangle"]))
    tokenizer = processor.tokenizer
    short = tokenizer("a red circle")["input_ids"]
    assert batch["labels"][0, : len(short)].tolist() == short
    assert (batch["labels"][0, len(short) :] == IGNORE_INDEX).all()
    assert (batch["labels"] != tokenizer.pad_token_id).all()
    assert batch["pixel_values"].shape[0] == 2 and batch["truncated_targets"] == 0


def test_padding_never_reaches_the_loss(processor, tiny_model):
    """The batch loss equals the mean token loss over real target tokens, computed by hand, and a
    short sample's loss does not change when it is padded next to a long one."""
    collate = Florence2Collator(processor, 64)
    batch = collate(items(["a red circle", "a blue square next to a green triangle and more"]))
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"])
        real = batch["labels"] != IGNORE_INDEX
        by_hand = F.cross_entropy(out.logits[real], batch["labels"][real])
        assert torch.allclose(out.loss, by_hand, atol=1e-6)

        alone = collate(items(["a red circle"]))
        alone_loss = tiny_model(**{k: alone[k] for k in MODEL_INPUTS}, labels=alone["labels"]).loss
        padded_tokens = F.cross_entropy(out.logits[0][real[0]], batch["labels"][0][real[0]])
        assert torch.allclose(alone_loss, padded_tokens, atol=1e-5)


def test_long_targets_are_truncated_keeping_the_end_token_and_counted(processor):
    batch = Florence2Collator(processor, 6)(items(["a red circle", "a blue square next to a green triangle"]))
    assert batch["truncated_targets"] == 1
    assert batch["labels"].shape[1] == 6
    assert batch["labels"][1, -1].item() == processor.tokenizer.eos_token_id


def test_items_dropped_by_the_dataset_are_counted(processor):
    batch = Florence2Collator(processor, 16)(items(["a red circle"]) + [None])
    assert batch["skipped_records"] == 1 and batch["ids"] == ["shapes-7-0"]


def test_a_batch_of_dropped_items_has_its_counts_and_a_stand_in_to_train_on(processor):
    """A DDP process with such a batch runs the stand-in through the model, times zero, so that the
    other processes do not wait for its gradients."""
    batch = Florence2Collator(processor, 16)([None, None])
    assert {name: batch[name] for name in DATA_COUNTS} == {
        "skipped_records": 2,
        "truncated_targets": 0,
        "dropped_annotations": 0,
    }
    assert "ids" not in batch
    stand_in = batch["stand_in"]
    assert stand_in["labels"].shape[0] == stand_in["input_ids"].shape[0] == stand_in["pixel_values"].shape[0] == 1
    assert stand_in["target_lengths"] == [2]  # <s></s>


def test_target_lengths_are_the_label_counts_known_without_the_device(processor):
    targets = ["a red circle", "a blue square next to a green triangle"]
    batch = Florence2Collator(processor, 6)(items(targets))
    assert batch["target_lengths"] == [len(processor.tokenizer("a red circle")["input_ids"]), 6]
    assert batch["target_lengths"] == (batch["labels"] != IGNORE_INDEX).sum(1).tolist()


def test_image_digests_only_when_asked_and_they_tell_images_apart(processor):
    twice = items(["a red circle"]) * 2 + items(["a red circle", "a blue square"])[1:]
    assert "image_digests" not in Florence2Collator(processor, 16)(twice)
    digests = Florence2Collator(processor, 16, digest_images=True)(twice)["image_digests"]
    assert digests[0] == digests[1] != digests[2]


def test_an_image_digest_changes_with_one_pixel_and_with_the_shape_alone():
    image = Image.new("RGB", (6, 4), (10, 20, 30))
    changed = image.copy()
    changed.putpixel((5, 3), (10, 20, 31))
    same_bytes_other_shape = Image.frombytes("RGB", (4, 6), image.tobytes())
    assert image_digest(image.copy()) == image_digest(image)
    assert len({image_digest(i) for i in (image, changed, same_bytes_other_shape)}) == 3


def test_with_every_image_cached_the_batch_carries_decoded_images_and_no_pixels(processor):
    """Once the feature cache holds every image the text inputs stay those of the real images, the
    digests too, and the decoded images travel for any the cache lacks after all."""
    chosen, flag = items(["a red circle", "<loc_1><loc_2>"]), SharedFlag()
    collate = Florence2Collator(processor, 16, digest_images=True, images_cached=flag)
    with_pixels = collate(chosen)
    assert with_pixels["pixel_values"].shape[0] == 2 and "decoded_images" not in with_pixels
    flag.set(True)
    without = collate(chosen)
    assert without["pixel_values"] is None
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(without[key], with_pixels[key])
    assert without["image_digests"] == with_pixels["image_digests"]
    assert without["image_sizes"] == with_pixels["image_sizes"]
    decoded = without["decoded_images"]
    assert len(decoded) == 2
    for row, item in enumerate(chosen):
        assert np.array_equal(np.asarray(decoded.image(row)), np.asarray(item["image"]))
    plain = Florence2Collator(processor, 16, digest_images=False, images_cached=flag)(chosen)
    assert plain["pixel_values"] is not None  # no digests, no cache to ask


def test_an_input_beyond_the_encoders_positions_is_named_or_dropped(processor):
    """The model has no position for it: an index error deep in the encoder, were it let through."""
    batch_items = items(["a red circle", "a square"])
    batch_items[1] |= {"prompt": "what is " * 40, "origin": "q.jsonl:7"}
    image_tokens = processor.image_processor.image_seq_length
    limit = image_tokens + 20
    with pytest.raises(DataError, match=rf"q.jsonl:7: the prompt takes \d+ tokens beside the image's {image_tokens}"):
        Florence2Collator(processor, 64, max_input_tokens=limit)(batch_items)
    batch = Florence2Collator(processor, 64, max_input_tokens=limit, on_bad_record="skip")(batch_items)
    assert batch["ids"] == [batch_items[0]["id"]] and batch["skipped_records"] == 1
    assert batch["input_ids"].shape[1] <= limit
    alone = Florence2Collator(processor, 64, max_input_tokens=limit, on_bad_record="skip")(batch_items[1:])
    assert "ids" not in alone and alone["skipped_records"] == 1
