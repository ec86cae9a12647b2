"""Counting trainable parameters per part of Florence-2, printed at the start of every run."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

PARTS: tuple[tuple[str, str], ...] = (
    ("lora", "lora_"),
    ("vision_tower", ".vision_tower."),
    ("projector", ".multi_modal_projector."),
    ("language_encoder", ".language_model.encoder."),
    ("language_decoder", ".language_model.decoder."),
)
"""(label, name fragment): the first matching fragment decides a parameter's part; the rest is
'embeddings/lm_head' (the shared token embedding)."""


@dataclass
class ParameterReport:
    trainable: int
    total: int
    trainable_by_part: dict[str, int]

    def describe(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        parts = ", ".join(f"{k} {v:,}" for k, v in self.trainable_by_part.items() if v)
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({share:.2f}%)" + (
            f" [{parts}]" if parts else ""
        )


def parameter_report(model: nn.Module) -> ParameterReport:
    by_part: dict[str, int] = {label: 0 for label, _ in PARTS} | {"embeddings/lm_head": 0}
    trainable = total = 0
    for name, param in model.named_parameters():
        total += param.numel()
        if not param.requires_grad:
            continue
        trainable += param.numel()
        label = next((label for label, fragment in PARTS if fragment in f".{name}"), "embeddings/lm_head")
        by_part[label] += param.numel()
    return ParameterReport(trainable, total, by_part)
