"""Teacher-forced cross-entropy computed on target tokens only.

`Florence2ForConditionalGeneration(labels=...)` projects every decoder position onto the 51289-word
vocabulary, padding included, and only then drops the padding in the loss. In a mixed-task batch
(short captions padded to a long `<OD>` answer) that is a large share of the positions (22-58% in
the benchmark's batches): the projection, the softmax over the vocabulary and their backward run on
rows the loss throws away, and the (batch, length, vocabulary) logits are the largest activation of
the language model. Here the decoder's hidden states are gathered at the target positions first, so
the projection sees only real tokens. The value is the same mean over target tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.florence2.modeling_florence2 import shift_tokens_right

from f2tune.data.collate import IGNORE_INDEX
from f2tune.model.adapt import florence2


def target_loss(model: nn.Module, labels: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions of `labels` that are not `IGNORE_INDEX`.

    `inputs` are what `Florence2Model.forward` takes for the encoder side (`input_ids` +
    `pixel_values`, or `inputs_embeds`, and `attention_mask`). `model` may be peft-wrapped: its LoRA
    layers sit inside the modules called here.
    """
    core = florence2(model)
    text = core.config.text_config
    decoder_input_ids = shift_tokens_right(labels, text.pad_token_id, text.decoder_start_token_id)
    hidden = core.model(**inputs, decoder_input_ids=decoder_input_ids, use_cache=False).last_hidden_state
    targets = labels != IGNORE_INDEX
    logits = core.lm_head(hidden[targets])
    return F.cross_entropy(logits.float(), labels[targets])
