"""Key rules from the original remote-code Florence-2 layout to the native transformers layout.

The remote code (`microsoft/Florence-2-*`, `modeling_florence2.py` on the Hub) wraps DaViT layers
in `PreNorm(norm, fn)` / `DepthWiseConv2d(dw)` / `Mlp(net.fc1, net.fc2)` and nests BART as
`language_model.model`; the native classes flatten these, rename the patch conv `proj` -> `conv`,
and move the projector parts under `multi_modal_projector`. Every remote key must match exactly one
rule: an unknown key is an error naming it, never a silently dropped weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from f2tune.errors import F2TuneError

_BLOCK = r"vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial_block|channel_block)\."
_NATIVE_BLOCK = r"model.vision_tower.blocks.\1.\2.\3."
_LAYER_PART = (
    r"(?:self_attn|encoder_attn)\.(?:q_proj|k_proj|v_proj|out_proj)"
    r"|self_attn_layer_norm|encoder_attn_layer_norm|final_layer_norm|fc1|fc2"
)


class ConvertError(F2TuneError):
    """A checkpoint cannot be converted: unknown keys, wrong shapes, or an unreadable source."""


@dataclass(frozen=True)
class Rule:
    """`pattern` (full match on a remote key) -> `replacement` (a `re` template), or dropped if None."""

    pattern: str
    replacement: str | None
    why: str
    transpose: bool = False  # the remote stores the projection as a (in, out) matrix, nn.Linear as (out, in)
    must_be_zero: bool = False  # dropped only if it cannot change outputs


RULES: tuple[Rule, ...] = (
    Rule(
        r"language_model\.model\.(shared\.weight|(?:encoder|decoder)\.(?:embed_tokens\.weight"
        r"|embed_positions\.weight|layernorm_embedding\.(?:weight|bias)))",
        r"model.language_model.\1",
        "BART embeddings: language_model.model -> model.language_model",
    ),
    Rule(
        rf"language_model\.model\.((?:encoder|decoder)\.layers\.\d+\.(?:{_LAYER_PART})\.(?:weight|bias))",
        r"model.language_model.\1",
        "BART layers: language_model.model -> model.language_model",
    ),
    Rule(r"language_model\.lm_head\.weight", "lm_head.weight", "output projection moves to the top"),
    Rule(r"language_model\.final_logits_bias", None, "BART's all-zero logits bias (no native one)", must_be_zero=True),
    Rule(
        r"vision_tower\.convs\.(\d+)\.proj\.(weight|bias)",
        r"model.vision_tower.convs.\1.conv.\2",
        "patch embedding conv",
    ),
    Rule(r"vision_tower\.convs\.(\d+)\.norm\.(weight|bias)", r"model.vision_tower.convs.\1.norm.\2", "patch norm"),
    Rule(
        _BLOCK + r"conv([12])\.fn\.dw\.(weight|bias)",
        _NATIVE_BLOCK + r"conv\4.\5",
        "depth-wise conv: PreNorm(None, DepthWiseConv2d).fn.dw -> conv1/conv2",
    ),
    Rule(
        _BLOCK + r"(?:window_attn|channel_attn)\.norm\.(weight|bias)",
        _NATIVE_BLOCK + r"norm1.\4",
        "attention pre-norm: PreNorm.norm -> norm1",
    ),
    Rule(
        _BLOCK + r"(window_attn|channel_attn)\.fn\.(qkv|proj)\.(weight|bias)",
        _NATIVE_BLOCK + r"\4.\5.\6",
        "attention: PreNorm.fn -> the attention module",
    ),
    Rule(_BLOCK + r"ffn\.norm\.(weight|bias)", _NATIVE_BLOCK + r"norm2.\4", "feed-forward pre-norm -> norm2"),
    Rule(
        _BLOCK + r"ffn\.fn\.net\.(fc1|fc2)\.(weight|bias)",
        _NATIVE_BLOCK + r"ffn.\4.\5",
        "feed-forward: PreNorm.fn.net -> ffn",
    ),
    Rule(r"vision_tower\.norms\.(weight|bias)", None, "DaViT classifier norm; Florence-2's image features skip it"),
    Rule(
        r"image_projection",
        "model.multi_modal_projector.image_projection.weight",
        "projection matrix -> nn.Linear weight (transposed)",
        transpose=True,
    ),
    Rule(r"image_proj_norm\.(weight|bias)", r"model.multi_modal_projector.image_proj_norm.\1", "projector norm"),
    Rule(
        r"image_pos_embed\.(row|column)_embeddings\.weight",
        r"model.multi_modal_projector.image_position_embed.\1_embeddings.weight",
        "2-D learned position embedding",
    ),
    Rule(
        r"visual_temporal_embed\.pos_idx_to_embed",
        "model.multi_modal_projector.visual_temporal_embed.pos_idx_to_embed",
        "1-D cosine temporal embedding (constant)",
    ),
)
_COMPILED = [(re.compile(rule.pattern), rule) for rule in RULES]


def match_rule(key: str) -> tuple[Rule, str | None] | None:
    """The rule for a remote key and the native key it becomes (None: dropped); None if unknown."""
    for pattern, rule in _COMPILED:
        if pattern.fullmatch(key):
            return rule, None if rule.replacement is None else pattern.sub(rule.replacement, key)
    return None


def convert_state_dict(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Native state dict from a remote-code one; every key must match a rule."""
    matches = {key: match_rule(key) for key in state}
    unknown = [key for key, found in matches.items() if found is None]
    if unknown:
        raise ConvertError(unknown_keys_message(unknown, where))
    native: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        rule, target = matches[key]
        if target is None:
            if rule.must_be_zero and torch.count_nonzero(tensor):
                raise ConvertError(f"{where}: {key} is not all zeros; the native model has no place for it")
            continue
        native[target] = tensor.t().contiguous() if rule.transpose else tensor
    return native


def unknown_keys_message(keys: list[str], where: str) -> str:
    shown = ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")
    return (
        f"{where}: {len(keys)} key(s) match no conversion rule: {shown}. Is this a remote-code Florence-2 "
        "(microsoft/Florence-2-*) checkpoint? If it is, add a rule to f2tune/convert/rules.py."
    )
