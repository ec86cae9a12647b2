"""Regional `torch.compile`: each repeated block (DaViT blocks, BART encoder and decoder layers) is
compiled in place, not the whole model.

Compiling the whole model takes long, recompiles as target lengths change and stops at generation's
Python control flow; a block sees few distinct shapes, blocks of one class reuse one compiled graph,
and in-place `nn.Module.compile` keeps parameter names, so checkpoints, exports and peft are unchanged.
"""

from __future__ import annotations

from torch import nn

from f2tune.model.adapt import florence2


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The DaViT blocks and BART layers of a Florence-2 (inside a peft wrapper or not)."""
    inner = florence2(model).model
    vision = [block for stage in inner.vision_tower.blocks for block in stage]
    language = inner.language_model
    return [*vision, *language.encoder.layers, *language.decoder.layers]


def compile_blocks(model: nn.Module, backend: str = "inductor") -> int:
    """Compile every repeated block in place; returns how many. (`backend`: tests use "aot_eager",
    which traces the same graphs without inductor's minutes of C++ code generation on a CPU.)"""
    blocks = repeated_blocks(model)
    for block in blocks:
        block.compile(backend=backend)
    return len(blocks)
