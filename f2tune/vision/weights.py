"""DaViT encoder weights from a Florence-2 folder, Hub id, f2tune full export or f2tune LoRA export.

A native Florence-2 checkpoint (and f2tune's full export, which has the same layout) is read with
`safetensors` alone, taking only the `model.vision_tower.` keys: the 140M-parameter language model is
never built. A LoRA export may adapt the vision tower, so it is applied the way peft does it (base +
adapter, merged) before the tower is taken. Pickle (.bin) weights are refused: they can run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors.torch import load_file
from transformers import Florence2VisionConfig

from f2tune.config import ModelConfig
from f2tune.errors import ModelLoadError
from f2tune.model.loading import attach_adapter, load_model, no_folder
from f2tune.vision.extractor import DaViTFeatureExtractor, davit_config

PREFIX = "model.vision_tower."
_LISTED = 5  # keys quoted per kind of mismatch; the count says how many more


def read_vision_tower(source: str | Path, revision: str | None = None) -> dict[str, torch.Tensor]:
    """The vision tower's state dict (keys without `model.vision_tower.`) of a folder or Hub id."""
    if _find(source, "adapter_config.json", revision, optional=True) is not None:
        return _merged_adapter_tower(str(source))
    index = _find(source, "model.safetensors.index.json", revision, optional=True)
    if index is not None:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [_find(source, shard, revision) for shard in shards]
        missing = [s for s, f in zip(shards, files) if f is None]
        if missing:
            raise ModelLoadError(f"{source}: shards named by model.safetensors.index.json are missing: {missing}")
    else:
        single = _find(source, "model.safetensors", revision)
        if single is None:
            raise ModelLoadError(
                f"{source}: no model.safetensors, model.safetensors.index.json or adapter_config.json; "
                "give a native Florence-2 folder or Hub id (florence-community/Florence-2-base|large), "
                "an f2tune export, or an f2tune LoRA adapter folder"
            )
        files = [single]
    tower: dict[str, torch.Tensor] = {}
    for file in files:
        weights = load_file(str(file))
        tower.update({k.removeprefix(PREFIX): v for k, v in weights.items() if k.startswith(PREFIX)})
    if not tower:
        raise ModelLoadError(
            f"{source}: the checkpoint has no '{PREFIX}*' weights: it is not a native Florence-2 checkpoint "
            "(microsoft/Florence-2-* use the older remote-code key names; use florence-community/Florence-2-*)"
        )
    return tower


def vision_config_from(spec: str | Path, revision: str | None = None) -> Florence2VisionConfig:
    """`base` / `large`, or the vision config of a checkpoint (folder, Hub id, f2tune full or LoRA
    export): framework configs then name only the weights, and the extractor always fits them."""
    if str(spec) in ("base", "large"):
        return davit_config(str(spec))  # type: ignore[arg-type]
    adapter = _find(spec, "adapter_config.json", revision, optional=True)
    if adapter is not None:
        recorded = json.loads(adapter.read_text())
        base = recorded.get("base_model_name_or_path")
        if not base:
            raise ModelLoadError(f"{spec}: its adapter_config.json names no base_model_name_or_path")
        return vision_config_from(base, recorded.get("revision"))  # the base it was trained on
    config = _find(spec, "config.json", revision)
    if config is None:
        raise ModelLoadError(f"{spec}: no config.json; give 'base', 'large' or a Florence-2 checkpoint")
    vision = json.loads(config.read_text()).get("vision_config")
    if not isinstance(vision, dict):
        raise ModelLoadError(f"{spec}: config.json has no vision_config (not a Florence-2 checkpoint)")
    return Florence2VisionConfig.from_dict(vision)


def load_davit_weights(extractor: DaViTFeatureExtractor, source: str | Path, revision: str | None = None) -> None:
    """Copy the encoder of `source` into `extractor`, or raise `ModelLoadError` listing what differs."""
    tower = read_vision_tower(source, revision)
    expected = extractor.davit.state_dict()
    problems = _differences(expected, tower)
    if problems:
        raise ModelLoadError(f"{source}: its vision tower does not fit this DaViT:\n" + "\n".join(problems))
    extractor.davit.load_state_dict(tower)


def _differences(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> list[str]:
    """Lines naming the size mismatch (base vs large), missing, unexpected and mis-shaped keys."""
    problems = []
    key = "convs.0.conv.weight"
    if key in expected and key in found and expected[key].shape[0] != found[key].shape[0]:
        problems.append(
            f"- first stage width: checkpoint {found[key].shape[0]}, extractor {expected[key].shape[0]} "
            "(128 is Florence-2-base, 256 is large: build the extractor with the checkpoint's config)"
        )
    shapes = [
        f"{k}: checkpoint {tuple(found[k].shape)}, extractor {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    for label, keys in (
        ("missing from the checkpoint", sorted(expected.keys() - found.keys())),
        ("unexpected in the checkpoint", sorted(found.keys() - expected.keys())),
        ("shape differs", shapes),
    ):
        if keys:
            more = f" (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else ""
            problems.append(f"- {label}: {len(keys)}: {', '.join(keys[:_LISTED])}{more}")
    return problems


def _find(source: str | Path, filename: str, revision: str | None, optional: bool = False) -> Path | None:
    """`filename` in a local folder, or from the Hub (its cache first); None when the source lacks
    it. Offline, an `optional` file (one a checkpoint may or may not have) that is not in the
    cache counts as absent where the repo itself is cached: transformers loads such a repo offline,
    and asking the Hub would fail."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    looks_local = str(source).startswith(("/", ".", "~")) or str(source).count("/") > 1
    if looks_local:
        raise ModelLoadError(no_folder(str(source)))
    cached = try_to_load_from_cache(str(source), filename, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if cached is _CACHED_NO_EXIST:  # the Hub said so before, and the cache remembers
        return None
    try:
        return Path(hf_hub_download(str(source), filename, revision=revision))
    except LocalEntryNotFoundError:  # offline and not cached: absence on the Hub is unknown
        if not isinstance(try_to_load_from_cache(str(source), "config.json", revision=revision), str):
            raise ModelLoadError(f"{source} is not in the local Hub cache, and the Hub is offline") from None
        if optional:
            return None
        raise ModelLoadError(f"{source}: {filename} is not in the local Hub cache, and the Hub is offline") from None
    except EntryNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot reach {source!r} on the Hub: {str(err).strip().splitlines()[0]}") from None


def _merged_adapter_tower(adapter: str) -> dict[str, torch.Tensor]:
    """Base + LoRA adapter, merged, so LoRA on the vision tower reaches the extracted weights. The
    base is loaded as a recipe's `model.adapter` loads it: at the revision the adapter records (the
    base it was trained on), and refused where weights would be left random (the remote-code
    layout, a checkpoint missing some)."""
    config = ModelConfig(adapter=adapter)
    merged = attach_adapter(load_model(config), config, trainable=False).merge_and_unload()
    tower = getattr(getattr(merged, "model", None), "vision_tower", None)
    if tower is None:
        raise ModelLoadError(f"{adapter}: its base has no model.vision_tower (not a Florence-2 model)")
    return {k: v.detach().clone() for k, v in tower.state_dict().items()}
