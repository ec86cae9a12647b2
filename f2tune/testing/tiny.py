"""A tiny random Florence-2 (about 0.33M parameters) with a real processor, built offline.

No weights can be downloaded in tests or CI, so the demo, the tests and the benchmarks run on this
model: the same classes as `florence-community/Florence-2-base` (DaViT + projector + BART), shrunk,
with a byte-level BPE tokenizer trained here on a small corpus plus the `<loc_N>` tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    BartConfig,
    BartTokenizer,
    CLIPImageProcessor,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
)

from f2tune.log import no_save_bars
from f2tune.testing.shapes import COLOURS, SHAPES

NUM_LOCATION_BINS = 1000
BART_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
STRUCTURE_TOKENS = ["<poly>", "</poly>", "<sep>"]
# What Florence2PostProcessor looks up per parse type; an empty dict means its defaults.
POST_PROCESSOR_CONFIG: dict[str, dict] = {
    name: {}
    for name in (
        "pure_text",
        "ocr",
        "phrase_grounding",
        "description_with_bboxes",
        "description_with_polygons",
        "polygons",
        "bboxes",
        "description_with_bboxes_or_polygons",
    )
}


def _corpus() -> list[str]:
    """Text the tiny tokenizer learns merges from: the processor's task sentences and demo words."""
    sentences = [
        "What does the image describe?",
        "Describe in detail what is shown in the image.",
        "Locate the objects with category name in the image.",
        "What is the text in the image, with regions?",
        "Locate the phrases in the caption:",
        "What is the polygon mask of region",
    ]
    words = [f"a {colour} {shape}" for colour in COLOURS for shape in SHAPES]
    return (sentences + words) * 4


def build_tiny_processor(image_size: int = 96) -> Florence2Processor:
    """Processor whose image side is `image_size` (a multiple of 32), i.e. (size/32)^2 + 1 image tokens."""
    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (DaViT stride), got {image_size}")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _corpus(), vocab_size=400, min_frequency=1, special_tokens=BART_SPECIAL_TOKENS, show_progress=False
    )
    model_json = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    tokenizer = BartTokenizer(vocab=model_json["vocab"], merges=merges, extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(NUM_LOCATION_BINS)] + STRUCTURE_TOKENS)
    side = {"height": image_size, "width": image_size}
    image_processor = CLIPImageProcessor(
        size=side,
        crop_size=side,
        do_center_crop=False,
        image_seq_length=(image_size // 32) ** 2 + 1,
    )
    return Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    )


def build_tiny_model(
    processor: Florence2Processor, seed: int = 0, drop_path_rate: float = 0.0
) -> Florence2ForConditionalGeneration:
    """Random tiny Florence-2 matching `processor`'s vocabulary; the same seed gives the same weights.
    Its DaViT has no drop-path unless `drop_path_rate` (Florence-2-base's is 0.1)."""
    text = {
        "vocab_size": len(processor.tokenizer),
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 256,
        # BART's 0.02 init leaves a 32-wide model's cross-attention near uniform for hundreds of
        # steps; 0.1 lets the demo learn to read the image within a minute on a CPU.
        "init_std": 0.1,
    }
    vision = {
        "embed_dim": [16, 32, 48, 64],
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 2, 3, 4],
        "num_groups": [1, 2, 3, 4],
        "window_size": 4,
        "projection_dim": 32,
        "drop_path_rate": drop_path_rate,
        "initializer_range": 0.1,
    }
    return random_florence2(processor, text, vision, seed)


def random_florence2(
    processor: Florence2Processor, text: dict, vision: dict, seed: int = 0
) -> Florence2ForConditionalGeneration:
    """A Florence-2 of any size with random weights (seeded), its special tokens from `processor`."""
    tokenizer = processor.tokenizer
    text_config = BartConfig(
        **text,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    config = Florence2Config(
        text_config=text_config.to_dict(), vision_config=vision, image_token_id=tokenizer.image_token_id
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Florence2ForConditionalGeneration(config)


def save_tiny(folder: str | Path, image_size: int = 96, seed: int = 0) -> Path:
    """Write a tiny model + processor folder that `from_pretrained` loads like a Hub checkpoint."""
    folder = Path(folder)
    processor = build_tiny_processor(image_size)
    with no_save_bars():
        build_tiny_model(processor, seed).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
