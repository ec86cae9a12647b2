"""Model FLOPs utilization: how much of the accelerator's bf16 peak a training loop turns into model math.

FLOPs per sample are counted, not estimated from parameter counts: `torch.utils.flop_counter` traces
one forward of every benchmark batch (as f2tune pads it, unsorted) and counts its matrix products,
convolutions and attention; a training step is taken as 3x the forward (backward about twice the
forward), the usual convention. The image feature cache's rows skip the vision tower from the
second pass on, so their count leaves the tower's share out: MFU says how busy the device is, the
speed column says how much sooner training ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

from f2tune.bench.setups import build_model
from f2tune.eval.generate import MODEL_INPUTS

TRAINING_STEP_FORWARDS = 3

CPU_FLASH_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if CPU_FLASH_ATTENTION not in flop_registry:
    # The count runs on CPU fake tensors, so SDPA dispatches to the CPU flash kernel, which torch
    # 2.14 does not count (its CUDA kernels it does): the DaViT's window attention alone is
    # 10.5 of its 380.7 GFLOPs at 768x768. Same formula as torch's for the other SDPA kernels.
    @register_flop_formula(CPU_FLASH_ATTENTION, get_raw=True)
    def _cpu_flash_attention_flops(query, key, value, *args, **kwargs) -> int:
        return sdpa_flop_count(query.shape, key.shape, value.shape)


PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H200": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
}
"""Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, matched in this order
against `torch.cuda.get_device_name` (so "H100 PCIe" is tried before "H100", the SXM part)."""


@dataclass(frozen=True)
class ModelFlops:
    """Training FLOPs per sample: all of the model, and without the vision tower + projector."""

    full: float
    language: float


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The device's bf16 peak in TFLOP/s: `override` if given, else the table; None when unknown."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in PEAK_BF16_TFLOPS.items() if part in name), None)


@torch.no_grad()
def count_training_flops(size: str, processor, batches: list[dict]) -> ModelFlops:
    """Counted on fake tensors: FLOPs depend on shapes only, so nothing is computed (Florence-2-base
    at 768x768 is counted in seconds). The weights are allocated uninitialised, since fake tensors
    need real ones to stand in for."""
    with torch.device("meta"):
        model = build_model(size, processor).eval()
    model = model.to_empty(device="cpu")
    samples = sum(len(batch["labels"]) for batch in batches)
    width = model.config.text_config.d_model
    vision = language = 0
    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        for batch in batches:
            inputs = {k: fake.from_tensor(batch[k]) for k in (*MODEL_INPUTS, "labels")}
            with FlopCounterMode(display=False) as counter:
                model.model.get_image_features(inputs["pixel_values"])
            vision += counter.get_total_flops()
            # Text embeddings with the image features merged in cost no FLOPs; passing them as
            # `inputs_embeds` skips the placeholder check, which reads values fake tensors lack.
            embeds = torch.empty(*inputs["input_ids"].shape, width)
            with FlopCounterMode(display=False) as counter:
                model(
                    inputs_embeds=embeds,
                    attention_mask=inputs["attention_mask"],
                    decoder_input_ids=inputs["labels"].clamp(min=0),
                )
            language += counter.get_total_flops()
    scale = TRAINING_STEP_FORWARDS / samples
    return ModelFlops(full=(vision + language) * scale, language=language * scale)


def utilization(flops_per_sample: float, samples_per_s: float, peak: float | None) -> tuple[float, float | None]:
    """(achieved TFLOP/s, MFU as a fraction of `peak`, or None without a peak)."""
    achieved = flops_per_sample * samples_per_s / 1e12
    return achieved, (achieved / peak if peak else None)
