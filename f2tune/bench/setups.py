"""What the benchmark trains: model sizes built from configs (random weights, offline) and mixed-task
data with a realistic spread of target lengths."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import torch
from transformers import Florence2ForConditionalGeneration, Florence2Processor

from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.sample import Sample
from f2tune.data.sampler import LengthGroupedSampler, target_lengths
from f2tune.testing.shapes import COLOURS, SHAPES, shape_samples
from f2tune.testing.tiny import build_tiny_model, random_florence2
from f2tune.vision.extractor import davit_config

BASE_VOCAB = 51289
"""Florence-2's vocabulary (BART's 50265 + 1000 `<loc_N>` + task/structure tokens): the embedding
and lm_head cost of the real model, while the tiny tokenizer's ids (< 1400) all fall inside it."""

MAX_TARGET_TOKENS = 1024


def build_model(size: str, processor: Florence2Processor, seed: int = 0) -> Florence2ForConditionalGeneration:
    """`tiny` (0.33M parameters) or `base` (Florence-2-base sizes, 231M), random weights."""
    if size == "tiny":
        return build_tiny_model(processor, seed)
    text = {
        "vocab_size": BASE_VOCAB,
        "d_model": 768,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "encoder_attention_heads": 12,
        "decoder_attention_heads": 12,
        "encoder_ffn_dim": 3072,
        "decoder_ffn_dim": 3072,
        "max_position_embeddings": 1024,
    }
    return random_florence2(processor, text, davit_config("base").to_dict(), seed)


def mixed_samples(count: int, image_size: int, seed: int = 0) -> list[Sample]:
    """Half short captions (3-15 words), half `<OD>` answers of 1-30 boxes (6 to ~180 tokens): the
    spread that makes padding to the longest target expensive."""
    rng = random.Random(seed)
    words = list(COLOURS) + list(SHAPES) + ["a", "the", "on", "grey", "background", "with", "small", "large"]
    samples = []
    for sample in shape_samples(count, seed=seed, image_size=image_size, name="bench"):
        if rng.random() < 0.5:
            samples.append(replace(sample, target=" ".join(rng.choices(words, k=rng.randint(3, 15)))))
            continue
        objects = []
        for _ in range(rng.randint(1, 30)):
            x1, y1 = rng.randrange(0, 900), rng.randrange(0, 900)
            box = (x1, y1, rng.randrange(x1 + 1, 1000), rng.randrange(y1 + 1, 1000))
            objects.append(rng.choice(SHAPES) + "".join(f"<loc_{v}>" for v in box))
        samples.append(replace(sample, prompt="<OD>", task="<OD>", target="".join(objects)))
    return samples


def batch_orders(samples: list[Sample], processor: Florence2Processor, batch_size: int, seed: int = 0) -> dict:
    """Index lists per batch: `random` (shuffled, as every trainer does) and `grouped` (f2tune's
    `data.group_by_length`); both use every sample once."""
    order = random.Random(seed).sample(range(len(samples)), len(samples))
    lengths = target_lengths(samples, processor.tokenizer, MAX_TARGET_TOKENS)
    grouped = list(LengthGroupedSampler(lengths, batch_size, seed=seed))
    cut = range(0, len(samples), batch_size)
    return {"random": [order[i : i + batch_size] for i in cut], "grouped": [grouped[i : i + batch_size] for i in cut]}


def f2tune_batches(samples: list[Sample], processor: Florence2Processor, order: list[list[int]]) -> list[dict]:
    """Batches as f2tune's collator builds them in a run's loader workers (labels padded with -100,
    target lengths, and the image digests that a run with the feature cache has them hash)."""
    dataset, collate = SampleDataset(samples), Florence2Collator(processor, MAX_TARGET_TOKENS, digest_images=True)
    return [collate([dataset[i] for i in rows]) for rows in order]


def reference_batches(samples: list[Sample], processor: Florence2Processor, order: list[list[int]]) -> list[dict]:
    """Batches as the usual Florence-2 scripts build them: processor inputs padded to the longest,
    labels straight from the tokenizer, so padding tokens are trained on."""
    batches = []
    for rows in order:
        chosen = [samples[i] for i in rows]
        inputs = processor(
            text=[s.prompt for s in chosen],
            images=[s.image.render() for s in chosen],
            return_tensors="pt",
            padding=True,
        )
        labels = processor.tokenizer(
            text=[s.target for s in chosen], return_tensors="pt", padding=True, return_token_type_ids=False
        ).input_ids
        batches.append({"input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"], "labels": labels})
    return batches


def padding_share(batches: list[dict[str, Any]], pad_id: int) -> float:
    """Fraction of label positions that are padding (-100 or the pad token)."""
    labels = torch.cat([b["labels"].flatten() for b in batches])
    return float(((labels == -100) | (labels == pad_id)).float().mean())
