"""The language model's input embeddings: text embeddings with the image features written at the
`<image>` placeholder tokens, exactly as `Florence2Model.forward` merges them.

Built outside the model wherever the image features are computed (or cached) separately from the
language model: the training feature cache and evaluation's encode-once generation.
"""

from __future__ import annotations

import torch
from torch import nn


def merge_image_features(core: nn.Module, input_ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """`core` is the `Florence2ForConditionalGeneration` (not a peft wrapper); `features` are the
    projected image features, (batch, image tokens, width)."""
    embeds = core.get_input_embeddings()(input_ids)
    features = features.to(embeds.device, embeds.dtype)
    mask = core.model.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=features)
    return embeds.masked_scatter(mask, features)
