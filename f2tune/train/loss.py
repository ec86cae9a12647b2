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

The token embedding table (51289 x 768, tied to the vocabulary projection) is looked up once for the
prompts and every decoder part together, and the projection runs once over all parts' targets: each
extra use of a tied table adds a dense gradient of the whole table to allocate, zero and sum (on a
CPU, 0.2-0.4 s per extra use at Florence-2-base size, mostly page faults of the fresh 157 MB buffer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.florence2.modeling_florence2 import shift_tokens_right

from f2tune.data.collate import IGNORE_INDEX
from f2tune.model.adapt import florence2
from f2tune.model.inputs import encode, merge_image_features

MIN_SPLIT_SAVING = 0.25
"""Split a batch only where that removes at least this share of its decoder positions: the second
part is one more pass through every kernel of the decoder, which a small saving would not pay for."""


def target_loss(
    model: nn.Module,
    labels: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
    image_features: torch.Tensor | None = None,
    target_lengths: Sequence[int] | None = None,
    split_by_length: bool = True,
) -> torch.Tensor:
    """Mean cross-entropy over the positions of `labels` that are not `IGNORE_INDEX`.

    The images come as `pixel_values` or, from the feature cache, as their projected
    `image_features`. `target_lengths` (the collator's) are each row's target token count, known on
    the host: with them the split and the gathering of target positions need nothing read back from
    the device; without them they are read from `labels` once. `model` may be peft-wrapped: its
    LoRA layers sit inside the modules called here. `split_by_length=False` keeps every batch in
    one pass (FSDP: its sharded modules are not run twice in one forward here).
    """
    core = florence2(model)
    if image_features is None:
        image_features = core.model.get_image_features(pixel_values).pooler_output
    text = core.config.text_config
    decoder_ids = shift_tokens_right(labels, text.pad_token_id, text.decoder_start_token_id)
    prompt_embeds, decoder_embeds = token_embeddings(core, input_ids, decoder_ids)
    encoder_embeds = merge_image_features(core, input_ids, image_features, prompt_embeds)
    encoded = encode(core, attention_mask, inputs_embeds=encoder_embeds)
    decoder = core.model.language_model.get_decoder()
    lengths = list(target_lengths) if target_lengths is not None else label_lengths(labels)
    width = labels.shape[1]
    parts = length_parts(lengths, width) if split_by_length else [(list(range(len(lengths))), width)]
    hidden, targets = [], []
    for rows, length in parts:
        picked = slice(None) if len(rows) == len(lengths) else _on(torch.tensor(rows), labels.device)
        states = decoder(
            inputs_embeds=decoder_embeds[picked, :length],
            encoder_hidden_states=encoded[picked],
            encoder_attention_mask=attention_mask[picked],
            use_cache=False,
        ).last_hidden_state
        positions = _on(prefix_positions([lengths[row] for row in rows], length), labels.device)
        hidden.append(states.flatten(0, 1).index_select(0, positions))
        targets.append(labels[picked, :length].flatten().index_select(0, positions))
    logits = core.lm_head(torch.cat(hidden))  # target positions only: padding is never projected
    return F.cross_entropy(logits.float(), torch.cat(targets), ignore_index=IGNORE_INDEX)


def token_embeddings(
    core: nn.Module, input_ids: torch.Tensor, decoder_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt, decoder input) token embeddings, from one lookup where the encoder's and the
    decoder's tables are the same weight with the same scale (Florence-2 ties them); otherwise
    (an adapter on one of them) each through its own module, as the model's forward does."""
    table = core.get_input_embeddings()
    decoder_table = core.model.language_model.get_decoder().embed_tokens
    same = (
        type(table) is type(decoder_table)
        and table.weight is decoder_table.weight
        and getattr(table, "embed_scale", 1.0) == getattr(decoder_table, "embed_scale", 1.0)
    )
    if not same:
        return table(input_ids), decoder_table(decoder_ids)
    both = table(torch.cat([input_ids.flatten(), decoder_ids.flatten()]))
    prompt, decoder = both.split([input_ids.numel(), decoder_ids.numel()])
    return prompt.view(*input_ids.shape, -1), decoder.view(*decoder_ids.shape, -1)


def label_lengths(labels: torch.Tensor) -> list[int]:
    """Last target position + 1 of each row of `labels` (one read from the device)."""
    positions = torch.arange(1, labels.shape[1] + 1, device=labels.device)
    return ((labels != IGNORE_INDEX) * positions).amax(dim=1).tolist()


def length_parts(lengths: list[int], width: int) -> list[tuple[list[int], int]]:
    """(rows, decoder length) of each part of a batch whose targets have `lengths` (padded to
    `width`): all rows at `width`, or the shorter and longer targets apart where that saves
    `MIN_SPLIT_SAVING` of the decoder positions."""
    count = len(lengths)
    lengths = [max(length, 1) for length in lengths]
    order = sorted(range(count), key=lengths.__getitem__)
    longest = lengths[order[-1]] if count else width
    best, cut = count * width, 0
    for k in range(1, count):  # the k shortest rows in one part, the rest in the other
        cost = k * lengths[order[k - 1]] + (count - k) * longest
        if cost < best:
            best, cut = cost, k
    if not cut or best > (1 - MIN_SPLIT_SAVING) * count * width:
        return [(list(range(count)), width)]
    return [(order[:cut], lengths[order[cut - 1]]), (order[cut:], longest)]


def prefix_positions(lengths: list[int], width: int) -> torch.Tensor:
    """Flat indices, in a (len(lengths), width) grid, of the first `lengths[i]` positions of each row."""
    return (torch.arange(width) < torch.tensor(lengths)[:, None]).flatten().nonzero().squeeze(1)


def _on(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`index` (built on the host) on `device` without waiting for the device's queued work."""
    return index.to(device, non_blocking=True)
