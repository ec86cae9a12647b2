"""Batched generation that also returns each generated token's probability (for box scores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from transformers import Florence2Processor
from transformers.modeling_outputs import BaseModelOutput

from f2tune.model.adapt import florence2
from f2tune.model.inputs import encode

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values")


class Decoding(Protocol):
    """The decoding settings generation needs (the recipe's `eval` section or a task's defaults)."""

    max_new_tokens: int
    num_beams: int
    no_repeat_ngram_size: int


@dataclass
class Generation:
    """One sample's output: text as `post_process_generation` expects it (`<loc_N>` kept, no
    `<s>`/`</s>`/padding), the generated token ids and their probabilities (None when not asked for)."""

    text: str
    token_ids: list[int]
    probabilities: list[float] | None


@torch.no_grad()
def generate(
    model: nn.Module,
    processor: Florence2Processor,
    batch: dict[str, Any],
    decoding: Decoding,
    with_probabilities: bool = True,
    synced: bool = False,
) -> list[Generation]:
    """Encode the images and prompts once, generate from that encoding, then (`with_probabilities`)
    score the chosen tokens. `synced`: every process calls this together and decodes until all are
    done (FSDP's sharded weights: `f2tune.eval.lockstep`).

    The probabilities come from one teacher-forced decoder pass over the finished sequences, not from
    `output_scores=True`: that keeps a vocabulary-wide score row per step and beam (51289 x beams x
    512 floats for an `<OD>` batch of Florence-2-base, over half a GiB) to read one number from each.
    The pass gives each token's probability under the model given its prefix, which is what beam
    search ranked it by.
    """
    core = florence2(model)
    attention_mask = batch["attention_mask"]
    encoded = encode(core, attention_mask, batch["input_ids"], batch["pixel_values"])
    sequences = model.generate(
        # A fresh output object: beam search expands the one it gets in place, beam by beam.
        encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
        attention_mask=attention_mask,
        max_new_tokens=min(decoding.max_new_tokens, _longest_output(model)),
        num_beams=decoding.num_beams,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        do_sample=False,
        synced_gpus=synced,
    )
    rows = sequences[:, 1:].tolist()
    probabilities = (
        token_probabilities(core, encoded, attention_mask, sequences).tolist() if with_probabilities else None
    )
    tokenizer = processor.tokenizer
    markers = (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token)
    results = []
    for n, ids in enumerate(rows):
        text = processor.decode(ids, skip_special_tokens=False)
        for marker in markers:
            text = text.replace(marker, "")
        kept = [k for k, i in enumerate(ids) if i != tokenizer.pad_token_id]
        scores = None if probabilities is None else [probabilities[n][k] for k in kept]
        results.append(Generation(text.strip(), [ids[k] for k in kept], scores))
    return results


def token_probabilities(
    core: nn.Module, encoded: torch.Tensor, attention_mask: torch.Tensor, sequences: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """(batch, length - 1): the probability of each token of `sequences` after the decoder start
    token. The vocabulary projection runs `chunk` positions at a time, so at most a (batch, chunk,
    vocabulary) block of logits exists at once."""
    hidden = core.model(
        encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
        attention_mask=attention_mask,
        decoder_input_ids=sequences[:, :-1],
    ).last_hidden_state
    targets = sequences[:, 1:]
    parts = []
    for start in range(0, targets.shape[1], chunk):
        logits = core.lm_head(hidden[:, start : start + chunk]).float()
        chosen = targets[:, start : start + chunk, None]
        parts.append(logits.log_softmax(-1).gather(-1, chosen).squeeze(-1))
    return torch.cat(parts, dim=1).exp()


def _longest_output(model: nn.Module) -> int:
    """Tokens the decoder can position (learned positions end there; past it generation crashes)."""
    text_config = model.config.text_config
    return text_config.max_position_embeddings - 2
