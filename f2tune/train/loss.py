"""Teacher-forced cross-entropy computed on target tokens only, with mixed-length batches split.

`Florence2ForConditionalGeneration(labels=...)` projects every decoder position onto the 51289-word
vocabulary, padding included, and only then drops the padding in the loss. In a mixed-task batch
(short captions padded to a long `<OD>` answer) that is a large share of the positions (22-58% in
the benchmark's batches): the projection, the softmax over the vocabulary and their backward run on
rows the loss throws away, and the (batch, length, vocabulary) logits are the largest activation of
the language model. Here the decoder's hidden states are gathered at the target positions first, so
the projection sees only real tokens.

The decoder layers themselves still run on the padding of a batch. Where the targets' lengths are
far apart, the images and prompts are encoded once for the whole batch, the decoder runs twice (the
shorter targets, padded only to their own longest, then the longer ones), and the parts' summed
losses are divided by the batch's target count: the same value and gradient as the whole batch in
one pass, with the same samples in the batch (unlike `data.group_by_length`, which changes which
samples share a batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.florence2.modeling_florence2 import shift_tokens_right

from f2tune.data.collate import IGNORE_INDEX
from f2tune.model.adapt import florence2
from f2tune.model.inputs import encode

MIN_SPLIT_SAVING = 0.25
"""Split a batch only where that removes at least this share of its decoder positions: the second
part is one more pass through every kernel of the decoder, which a small saving would not pay for."""


def target_loss(
    model: nn.Module, labels: torch.Tensor, split_by_length: bool = True, **inputs: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy over the positions of `labels` that are not `IGNORE_INDEX`.

    `inputs` are what `Florence2Model.forward` takes for the encoder side (`input_ids` +
    `pixel_values`, or `inputs_embeds`, and `attention_mask`), batch first. `model` may be
    peft-wrapped: its LoRA layers sit inside the modules called here. `split_by_length=False` keeps
    every batch in one pass (FSDP: its sharded modules are not run twice in one forward here).
    """
    core = florence2(model)
    count = (labels != IGNORE_INDEX).sum()
    parts = length_parts(labels) if split_by_length else []
    if len(parts) < 2:
        return _summed_loss(core, labels, inputs) / count
    encoded = encode(core, **inputs)
    total = torch.zeros((), device=labels.device)
    for rows, length in parts:
        part = {
            "encoder_outputs": BaseModelOutput(last_hidden_state=encoded[rows]),
            "attention_mask": inputs["attention_mask"][rows],
        }
        total = total + _summed_loss(core, labels[rows, :length], part)
    return total / count


def length_parts(labels: torch.Tensor) -> list[tuple[torch.Tensor | slice, int]]:
    """(rows, decoder length) of each part of the batch: all rows at the batch's length, or the
    shorter and longer targets apart where that saves `MIN_SPLIT_SAVING` of the decoder positions."""
    count, width = labels.shape
    real = labels != IGNORE_INDEX
    positions = torch.arange(1, width + 1, device=labels.device)
    lengths = (real * positions).amax(dim=1).clamp(min=1).tolist()  # last target position + 1 per row
    order = sorted(range(count), key=lengths.__getitem__)
    longest = lengths[order[-1]] if count else width
    best, cut = count * width, 0
    for k in range(1, count):  # the k shortest rows in one part, the rest in the other
        cost = k * lengths[order[k - 1]] + (count - k) * longest
        if cost < best:
            best, cut = cost, k
    if not cut or best > (1 - MIN_SPLIT_SAVING) * count * width:
        return [(slice(None), width)]
    device = labels.device
    return [
        (torch.tensor(order[:cut], device=device), lengths[order[cut - 1]]),
        (torch.tensor(order[cut:], device=device), longest),
    ]


def _summed_loss(core: nn.Module, labels: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy of one part; the vocabulary projection sees its target positions only."""
    text = core.config.text_config
    decoder_input_ids = shift_tokens_right(labels, text.pad_token_id, text.decoder_start_token_id)
    hidden = core.model(**inputs, decoder_input_ids=decoder_input_ids, use_cache=False).last_hidden_state
    targets = labels != IGNORE_INDEX
    logits = core.lm_head(hidden[targets])
    return F.cross_entropy(logits.float(), labels[targets], reduction="sum")
