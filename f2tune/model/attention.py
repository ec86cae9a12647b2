"""Which attention kernels a run uses: `model.attn_implementation: auto` picks them by device and precision.

The choice is made once both are known, after loading (which uses SDPA): by `Florence2Module.setup`
for training and evaluation, and by `f2tune predict`. PyTorch's CPU SDPA kernels are slow in bf16:
forward + backward on one thread, against transformers' eager path (matmul, softmax, matmul) on
Florence-2-base's shapes, DaViT windows of 144 tokens took 3.7-4.1x as long, its channel groups
1.4-1.7x, BART decoder self-attention 3.6x, cross-attention 2.2x, and encoder self-attention over
600 tokens 1.2x; generating 40 tokens with 3 beams for two 768x768 images in bf16 took 8.6-9.1 s
eager against 10.1-10.8 s. In fp32 SDPA is as fast or (over long sequences) twice as fast, and on
GPUs its fused kernels are what it is for.
"""

from __future__ import annotations

from torch import nn

from f2tune.model.adapt import florence2


def attention_for(device_type: str, in_bf16: bool) -> str:
    """The attention `auto` means on `device_type` ("cpu", "cuda", ...), computing in bf16 or not
    (bf16 autocast or weights)."""
    return "eager" if device_type == "cpu" and in_bf16 else "sdpa"


def use_attention(model: nn.Module, implementation: str) -> bool:
    """Switch the (possibly peft-wrapped) model's attention, vision tower and language model alike;
    True when it changed. Weights and modules are untouched: transformers dispatches per call."""
    base = florence2(model)
    if base.config._attn_implementation == implementation:
        return False
    base.set_attn_implementation(implementation)
    return True
