"""The language model's input embeddings: text embeddings with the image features written at the
`<image>` placeholder tokens, exactly as `Florence2Model.forward` merges them.

Built outside the model wherever the image features are computed (or cached) separately from the
language model, or the encoder's output is shared by several decoder passes: the training feature
cache, evaluation's encode-once generation, and the loss of a batch split by target length.
"""

from __future__ import annotations

import torch
from torch import nn


def merge_image_features(
    core: nn.Module, input_ids: torch.Tensor, features: torch.Tensor, embeds: torch.Tensor | None = None
) -> torch.Tensor:
    """`core` is the `Florence2ForConditionalGeneration` (not a peft wrapper); `features` are the
    projected image features, (batch, image tokens, width); `embeds` the prompt's token embeddings
    where the caller has looked them up already."""
    if embeds is None:
        embeds = core.get_input_embeddings()(input_ids)
    features = features.to(embeds.device, embeds.dtype)
    mask = input_ids == core.config.image_token_id
    # Checked where the tensors are, not read back (as transformers' `get_placeholder_mask` does):
    # a read here would stall a GPU after every pass through the vision tower.
    torch._assert_async(
        mask.sum() == features.shape[0] * features.shape[1],
        f"the prompts' <image> tokens are not one per image feature ({features.shape[0]} images x "
        f"{features.shape[1]} features): the processor and the model come from checkpoints of different image sizes",
    )
    return embeds.masked_scatter(mask.unsqueeze(-1), features)


def encode(
    core: nn.Module,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    pixel_values: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """The language encoder's last hidden state for images + prompts (or for `inputs_embeds` already
    merged): what every decoder pass over the same batch can share."""
    if inputs_embeds is None:
        features = core.model.get_image_features(pixel_values).pooler_output
        inputs_embeds = merge_image_features(core, input_ids, features)
    return core.model.get_encoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
