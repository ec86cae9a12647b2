"""The target-only loss is transformers' loss, computed without projecting padding onto the vocabulary,
for batches of far-apart target lengths in two parts split by length, with one lookup of the tied
token embedding table, and with nothing of its own read back from the device."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers.masking_utils
from peft import LoraConfig, get_peft_model

from f2tune.bench.setups import mixed_samples
from f2tune.data.collate import IGNORE_INDEX, Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.model.adapt import LORA_PRESETS
from f2tune.train.loss import label_lengths, length_parts, target_loss


def _padded_batch(processor) -> dict:
    """Captions and `<OD>` answers in one batch: a quarter of the label positions are padding."""
    dataset = SampleDataset(mixed_samples(6, 96, seed=1))
    batch = Florence2Collator(processor, 256)([dataset[i] for i in range(6)])
    assert (batch["labels"] == IGNORE_INDEX).float().mean() > 0.2
    return batch


def _split_batch(processor) -> dict:
    """Three captions and three long `<OD>` answers: split in two parts by target length."""
    dataset = SampleDataset(mixed_samples(12, 96, seed=1))
    batch = Florence2Collator(processor, 256)([dataset[i] for i in (0, 1, 7, 2, 9, 4)])
    assert len(length_parts(batch["target_lengths"], batch["labels"].shape[1])) == 2
    return batch


BATCHES = {"whole": _padded_batch, "split": _split_batch}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


@pytest.mark.parametrize("lengths", ["collator", "labels"])
@pytest.mark.parametrize("kind", BATCHES)
def test_loss_and_gradients_equal_transformers(tiny_model, processor, kind, lengths):
    tiny_model.eval()  # no dropout: both passes see the same network
    batch = BATCHES[kind](processor)
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    expected = tiny_model(**inputs, labels=batch["labels"]).loss
    expected.backward()
    expected_grads = _grads(tiny_model)
    target_lengths = batch["target_lengths"] if lengths == "collator" else None
    loss = target_loss(tiny_model, batch["labels"], **inputs, target_lengths=target_lengths)
    loss.backward()
    grads = _grads(tiny_model)
    torch.testing.assert_close(loss, expected)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=name)


@pytest.mark.parametrize("kind", BATCHES)
def test_untied_decoder_table_gives_transformers_loss(tiny_model, processor, kind):
    """Where the decoder has a table of its own (an adapter on it, or untied weights), each side
    looks up its own, as the model's forward does."""
    tiny_model.eval()
    language = tiny_model.model.language_model
    language.decoder.embed_tokens = copy.deepcopy(language.decoder.embed_tokens)
    with torch.no_grad():
        language.decoder.embed_tokens.weight.mul_(-2)
    batch = BATCHES[kind](processor)
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    with torch.no_grad():
        expected = tiny_model(**inputs, labels=batch["labels"]).loss
        torch.testing.assert_close(target_loss(tiny_model, batch["labels"], **inputs), expected)


@pytest.mark.parametrize("kind", BATCHES)
def test_lora_and_cached_image_features(tiny_model, processor, kind):
    """The peft-wrapped model trains its LoRA weights through this path, and the feature cache's
    `image_features` give the loss of the pixels they were computed from."""
    tiny_model.eval()
    batch = BATCHES[kind](processor)
    model = get_peft_model(tiny_model, LoraConfig(r=4, target_modules=LORA_PRESETS["language"]))
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    loss = target_loss(model, batch["labels"], **inputs)
    loss.backward()
    lora_grads = [p.grad for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    core = model.get_base_model()
    with torch.no_grad():
        features = core.model.get_image_features(batch["pixel_values"]).pooler_output
        cached = target_loss(
            model, batch["labels"], batch["input_ids"], batch["attention_mask"], image_features=features
        )
    torch.testing.assert_close(cached, loss.detach())


def test_far_apart_lengths_split_into_short_and_long_rows():
    (short, short_length), (long, long_length) = length_parts([180, 12, 150, 20, 9], 180)
    assert sorted(short) == [1, 3, 4] and short_length == 20
    assert sorted(long) == [0, 2] and long_length == 180


def test_close_lengths_or_a_small_saving_stay_whole():
    assert length_parts([40, 35, 38, 40], 40) == [([0, 1, 2, 3], 40)]
    assert length_parts([100, 100, 100, 70], 100) == [([0, 1, 2, 3], 100)]  # saves 7.5%
    assert length_parts([30], 30) == [([0], 30)]


def test_lengths_read_from_labels_are_the_collators(processor):
    batch = _split_batch(processor)
    assert label_lengths(batch["labels"]) == batch["target_lengths"]


def test_nothing_is_read_back_from_the_device(tiny_model, processor, monkeypatch):
    """With the collator's target lengths, forward and backward run on the meta device, where any
    read of a value (`.item()`, `.tolist()`, a boolean mask's index) raises: on a GPU the step
    queues its work without waiting for it. transformers' attention-mask builders read the mask to
    see whether SDPA may skip it; that shortcut is turned off here, as it is not this loss's read."""
    monkeypatch.setattr(transformers.masking_utils, "_ignore_bidirectional_mask_sdpa", lambda *a, **k: False)
    monkeypatch.setattr(transformers.masking_utils, "_ignore_causal_mask_sdpa", lambda *a, **k: False)
    batch = _split_batch(processor)
    meta = tiny_model.to("meta")
    inputs = {k: batch[k].to("meta") for k in (*MODEL_INPUTS, "labels")}
    loss = target_loss(meta, **inputs, target_lengths=batch["target_lengths"])
    loss.backward()
    assert loss.device.type == "meta" and meta.lm_head.weight.grad is not None


@pytest.mark.parametrize(("split", "decoder_passes"), [(True, 2), (False, 1)])
def test_split_batch_encodes_once_and_decodes_once_per_part(tiny_model, processor, split, decoder_passes):
    batch = _split_batch(processor)
    language = tiny_model.model.language_model
    calls = {"encoder": 0, "decoder": 0, "vision": 0}
    for name, module in (
        ("encoder", language.encoder),
        ("decoder", language.decoder),
        ("vision", tiny_model.model.vision_tower),
    ):
        module.register_forward_hook(lambda *args, name=name: calls.__setitem__(name, calls[name] + 1))
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    with torch.no_grad():
        target_loss(tiny_model, batch["labels"], split_by_length=split, **inputs)
    assert calls == {"encoder": 1, "decoder": decoder_passes, "vision": 1}


def test_tied_table_is_looked_up_and_projected_onto_once(tiny_model, processor):
    """Each use of the tied table adds a dense gradient of the whole table: prompts and both decoder
    parts share one lookup, and both parts' targets one projection."""
    batch = _split_batch(processor)
    language = tiny_model.model.language_model
    calls = {"table": 0, "encoder table": 0, "decoder table": 0, "lm_head": 0}
    for name, module in (
        ("table", language.shared),
        ("encoder table", language.encoder.embed_tokens),
        ("decoder table", language.decoder.embed_tokens),
        ("lm_head", tiny_model.lm_head),
    ):
        module.register_forward_hook(lambda *args, name=name: calls.__setitem__(name, calls[name] + 1))
    target_loss(tiny_model, **{k: batch[k] for k in (*MODEL_INPUTS, "labels")}).backward()
    assert calls == {"table": 1, "encoder table": 0, "decoder table": 0, "lm_head": 1}
    assert tiny_model.lm_head.weight.grad is not None
