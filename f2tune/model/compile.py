"""Regional `torch.compile`: each repeated block (DaViT blocks, BART encoder and decoder layers) is
compiled in place, not the whole model.

Compiling the whole model takes long, recompiles as target lengths change and stops at generation's
Python control flow; a block sees few distinct shapes, blocks of one class share one cache of
compiled graphs (one per shape), and in-place `nn.Module.compile` keeps parameter names, so
checkpoints, exports and peft are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from f2tune.model.adapt import florence2

RECOMPILE_LIMIT = 32
"""Graphs dynamo may keep per block class. The blocks of one class share one code object, and so
one cache of graphs: each DaViT stage has its own width (a graph per stage), and another once the
batch size changes (an epoch's last batch); encoder and decoder layers share transformers'
checkpointing wrapper, called with other arguments. torch's default of 8 was reached within a tiny
run's first steps, after which every new shape ran eager, with a warning."""


def vision_blocks(model: nn.Module) -> list[nn.Module]:
    """The DaViT blocks of a Florence-2 (inside a peft wrapper or not), stage by stage."""
    return [block for stage in florence2(model).model.vision_tower.blocks for block in stage]


def language_layers(model: nn.Module) -> list[nn.Module]:
    """The BART encoder layers, then the decoder layers, of a Florence-2."""
    language = florence2(model).model.language_model
    return [*language.encoder.layers, *language.decoder.layers]


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The DaViT blocks and BART layers of a Florence-2 (inside a peft wrapper or not)."""
    return [*vision_blocks(model), *language_layers(model)]


def compile_blocks(model: nn.Module, backend: str = "inductor", vision: bool = True) -> int:
    """Compile the repeated blocks in place (the DaViT's only with `vision`); returns how many.
    (`backend`: tests use "aot_eager", which traces the same graphs without inductor's minutes of
    C++ code generation on a CPU.)

    DaViT blocks compile static shapes: their inputs change only from stage to stage (the image
    size is the processor's), where dynamo's automatic dynamic shapes made the graphs of stages 2-4
    symbolic in their width (the tiny model's blocks: 96 s to compile under aot_eager, 8.7 s static)
    and their kernels general. BART layers keep automatic dynamic shapes: their sequence lengths
    change with every batch. Raises dynamo's per-function graph limit to `RECOMPILE_LIMIT` (a
    process-wide setting)."""
    blocks, layers = vision_blocks(model) if vision else [], language_layers(model)
    for block in blocks:
        block.compile(backend=backend, dynamic=False)
    for layer in layers:
        layer.compile(backend=backend)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return len(blocks) + len(layers)
