"""Batched generation that also returns each generated token's probability (for box scores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from transformers import Florence2Processor

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values")


class Decoding(Protocol):
    """The decoding settings generation needs (the recipe's `eval` section or a task's defaults)."""

    max_new_tokens: int
    num_beams: int
    no_repeat_ngram_size: int


@dataclass
class Generation:
    """One sample's output: text as `post_process_generation` expects it (`<loc_N>` kept, no
    `<s>`/`</s>`/padding), the generated token ids and their probabilities."""

    text: str
    token_ids: list[int]
    probabilities: list[float]


@torch.no_grad()
def generate(
    model: nn.Module, processor: Florence2Processor, batch: dict[str, Any], decoding: Decoding
) -> list[Generation]:
    output = model.generate(
        **{k: batch[k] for k in MODEL_INPUTS},
        max_new_tokens=min(decoding.max_new_tokens, _longest_output(model)),
        num_beams=decoding.num_beams,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
    )
    beams = getattr(output, "beam_indices", None)
    log_probs = model.compute_transition_scores(output.sequences, output.scores, beams, normalize_logits=beams is None)
    generated = output.sequences[:, -log_probs.shape[1] :]
    tokenizer = processor.tokenizer
    markers = (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token)
    results = []
    for ids, scores in zip(generated.tolist(), log_probs.exp().tolist()):
        text = processor.decode(ids, skip_special_tokens=False)
        for marker in markers:
            text = text.replace(marker, "")
        kept = [(i, p) for i, p in zip(ids, scores) if i != tokenizer.pad_token_id]
        results.append(Generation(text.strip(), [i for i, _ in kept], [p for _, p in kept]))
    return results


def _longest_output(model: nn.Module) -> int:
    """Tokens the decoder can position (learned positions end there; past it generation crashes)."""
    text_config = model.config.text_config
    return text_config.max_position_embeddings - 2
