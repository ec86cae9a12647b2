"""Which weights train: full fine-tuning, LoRA through peft, and freezing parts via requires_grad.

LoRA targets are regexes over the real module names of `Florence2ForConditionalGeneration`: BART
and DaViT both have `fc1`/`fc2`, so a plain name list would silently adapt both towers.
"""

from __future__ import annotations

import re

from peft import LoraConfig, get_peft_model
from torch import nn

from f2tune.config import AdaptationConfig, FreezeConfig, LoraSettings
from f2tune.errors import RecipeError, first_few

_LANGUAGE = (
    r".*language_model\.(encoder|decoder)\.layers\.\d+\."
    r"((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"
)
_VISION = (
    r".*vision_tower\.blocks\.\d+\.\d+\.(spatial_block\.window_attn|channel_block\.channel_attn)\.(qkv|proj)"
    r"|.*vision_tower\.blocks\.\d+\.\d+\.(spatial_block|channel_block)\.ffn\.(fc1|fc2)"
)
_PROJECTOR = r".*multi_modal_projector\.image_projection"

LORA_PRESETS: dict[str, str] = {
    "language": _LANGUAGE,
    "vision": _VISION,
    "all": f"{_LANGUAGE}|{_VISION}|{_PROJECTOR}",
}
"""Attention and feed-forward linears of the BART layers, of the DaViT blocks, or both + projector."""


def lora_target_regex(target: str) -> str:
    """The regex for a preset name, or `target` itself (the recipe checked that it compiles)."""
    return LORA_PRESETS.get(target, target)


LORA_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
"""The layer types peft's LoRA adapts (of those Florence-2 has)."""


def lora_targets(model: nn.Module, target: str) -> list[str]:
    """Names of the modules `target` selects (full match, as peft does); error if it selects none."""
    regex = re.compile(lora_target_regex(target))
    names = [name for name, _ in model.named_modules() if name and regex.fullmatch(name)]
    if not names:
        examples = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:6]
        raise RecipeError(
            f"lora.target {target!r} matches no module. Use a preset ({', '.join(LORA_PRESETS)}) or a "
            f"regex over full names such as {', '.join(examples)}"
        )
    modules = dict(model.named_modules())
    unsupported = [
        f"{name} ({type(modules[name]).__name__})" for name in names if not isinstance(modules[name], LORA_LAYERS)
    ]
    if unsupported:  # peft would refuse them with a traceback
        raise RecipeError(
            f"lora.target {target!r} matches modules LoRA cannot adapt: {first_few(unsupported)}. LoRA adapts "
            "linear, convolution and embedding layers: narrow the regex to those"
        )
    _check_tied(model, target, names)
    _check_grouped(modules, target, names)
    return names


def _check_tied(model: nn.Module, target: str, names: list[str]) -> None:
    """Refuse a module whose weight another module shares (`lm_head`, `shared`, `embed_tokens`: one
    token table). Trained unmerged the adapter is right, but merging it (`lora.merge`, `f2tune export
    --kind merged`, a full fine-tune that starts from the adapter) writes the update into that one
    matrix, so the token embeddings change too: a different model, with no error."""
    holders: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter):
            holders.setdefault(id(weight), []).append(name)
    modules = dict(model.named_modules())
    tied = [
        f"{name} (shares its weight with {', '.join(n for n in holders[id(modules[name].weight)] if n != name)})"
        for name in names
        if len(holders.get(id(getattr(modules[name], "weight", None)), [])) > 1
    ]
    if tied:
        raise RecipeError(
            f"lora.target {target!r} matches modules with a tied weight: {first_few(tied)}. A merged export "
            "would add their update to every module sharing the weight, changing the model: leave them out of "
            "the regex (the presets do)"
        )


def _check_grouped(modules: dict[str, nn.Module], target: str, names: list[str]) -> None:
    """peft adapts a grouped convolution (the DaViT's depthwise ones) only when r is a multiple of its
    groups, and refuses it otherwise from inside `get_peft_model` with a traceback; those convolutions
    are better left out than adapted at a rank of 16+ for a 3x3 kernel per channel."""
    grouped = [f"{name} (groups={modules[name].groups})" for name in names if getattr(modules[name], "groups", 1) > 1]
    if grouped:
        raise RecipeError(
            f"lora.target {target!r} matches grouped (depthwise) convolutions: {first_few(grouped)}. LoRA "
            "adapts only whole convolutions here: narrow the regex (e.g. to the patch convolutions, "
            "vision_tower.convs.N.conv)"
        )


def apply_adaptation(model: nn.Module, adaptation: AdaptationConfig, lora: LoraSettings) -> nn.Module:
    """Wrap with LoRA if asked, then freeze the requested parts; returns the model to train."""
    if adaptation.method == "lora":
        lora_targets(model, lora.target)
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            use_dora=lora.use_dora,
            use_rslora=lora.use_rslora,
            target_modules=lora_target_regex(lora.target),
        )
        model = get_peft_model(model, peft_config)
    freeze_parts(model, adaptation.freeze)
    return model


def frozen_prefixes(freeze: FreezeConfig) -> list[str]:
    """Parameter-name fragments for each part to freeze (names are matched after an optional
    peft `base_model.model.` prefix)."""
    parts = []
    if freeze.vision_tower:
        parts.append("model.vision_tower.")
    for stage in freeze.vision_stages:
        parts += [f"model.vision_tower.convs.{stage}.", f"model.vision_tower.blocks.{stage}."]
    if freeze.projector:
        parts.append("model.multi_modal_projector.")
    if freeze.language_encoder:
        # The token embedding is tied to the decoder's and lm_head; named `language_model.shared`,
        # it falls outside this prefix and stays trainable.
        parts.append("model.language_model.encoder.")
    return parts


def freeze_parts(model: nn.Module, freeze: FreezeConfig) -> int:
    """Set requires_grad=False on every parameter of the parts named; returns how many were frozen."""
    prefixes = frozen_prefixes(freeze)
    if not prefixes:
        return 0
    pattern = re.compile(r"(^|\.)(" + "|".join(re.escape(p) for p in prefixes) + ")")
    frozen = 0
    for name, param in model.named_parameters():
        if pattern.search(name):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def florence2(model: nn.Module) -> nn.Module:
    """The `Florence2ForConditionalGeneration` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
