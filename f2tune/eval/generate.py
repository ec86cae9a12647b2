"""Batched generation with the decoding settings of the recipe's `eval` section."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Florence2Processor

from f2tune.config import EvalConfig

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values")


@torch.no_grad()
def generate_text(
    model: nn.Module, processor: Florence2Processor, batch: dict[str, Any], config: EvalConfig
) -> list[str]:
    """Decoded outputs, one per sample, with `<loc_N>` and other added tokens kept but without
    `<s>`, `</s>` and padding (what `post_process_generation` expects)."""
    output = model.generate(
        **{k: batch[k] for k in MODEL_INPUTS},
        max_new_tokens=config.max_new_tokens,
        num_beams=config.num_beams,
        no_repeat_ngram_size=config.no_repeat_ngram_size,
        do_sample=False,
    )
    texts = processor.batch_decode(output, skip_special_tokens=False)
    tokenizer = processor.tokenizer
    markers = (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token)
    cleaned = []
    for text in texts:
        for marker in markers:
            text = text.replace(marker, "")
        cleaned.append(text.strip())
    return cleaned
