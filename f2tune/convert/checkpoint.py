"""`f2tune convert`: a remote-code Florence-2 model or a LoRA adapter trained on one -> native layout.

The native model's config and processor come from a native checkpoint of the same size (`--base`,
by default the `florence-community` twin of the source's `microsoft` base): the weights are
converted by the rule table and must fill that model exactly, so a wrong size or an unknown key
stops the conversion instead of producing a model that loads with random parts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from safetensors.torch import load_file, save_file

from f2tune.convert.rules import ConvertError, convert_state_dict, match_rule, unknown_keys_message
from f2tune.errors import ModelLoadError, first_sentence, safetensors_os_errors
from f2tune.export.atomic import atomic_folder, check_replaceable
from f2tune.log import no_save_bars, say

_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"(?P<module>.+?)\.(?P<part>lora_\w+(?:\.weight)?)")
_REMOTE_BASE = re.compile(r"microsoft/(Florence-2-(?:base|large)(?:-ft)?)")

T = TypeVar("T")

if TYPE_CHECKING:
    from transformers import GenerationConfig


def convert(source: Path, out: Path, base: str | None = None) -> Path:
    """Convert `source` (model folder or weights file, or a peft adapter folder) into `out`."""
    source = Path(source)
    if not source.exists():
        raise ConvertError(f"convert: no such file or folder: {source}")
    _refuse_training_checkpoint(source)
    check_replaceable(out, "convert")
    if (source / "adapter_config.json").is_file():
        return convert_adapter(source, out, base)
    return convert_model(source, out, base)


def convert_model(source: Path, out: Path, base: str | None = None) -> Path:
    """Native model + processor folder; the converted weights must fill `base`'s architecture."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    given = base
    base = base or _default_base((source if source.is_dir() else source.parent) / "config.json", "_name_or_path")
    named = f"--base {base}" if given else f"{base} (the default --base for this source)"
    state = convert_state_dict(_read_weights(source), str(source))
    native_config = _load_base(base, named, AutoConfig.from_pretrained)
    processor = _load_base(base, named, AutoProcessor.from_pretrained)
    model = AutoModelForImageTextToText.from_config(native_config, dtype=weights_dtype(state))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches: torch lists them one per line after a header
        details = [line.strip() for line in str(err).splitlines()[1:3]]
        raise ConvertError(f"{source}: the weights do not fit {base} (another size?): {' '.join(details)}") from None
    native = model.state_dict()
    loaded = {native[k].data_ptr() for k in state if k in native}
    missing = [k for k in missing if native[k].data_ptr() not in loaded]  # tied copies are filled
    if missing or unexpected:
        raise ConvertError(
            f"{source}: after conversion {len(missing)} weight(s) of {base} are missing and {len(unexpected)} are "
            f"unknown: {', '.join((missing + unexpected)[:8])}; is --base the same model size?"
        )
    generation, generation_from = generation_config(source if source.is_dir() else source.parent, base)
    if generation is not None:
        model.generation_config = generation
    with atomic_folder(out, "convert") as staging, safetensors_os_errors(out), no_save_bars():
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    say(
        f"convert: {source} -> {out} (native model in {model.dtype}, config and processor of {base}, "
        f"decoding settings of {generation_from})"
    )
    return out


def weights_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    """The one floating dtype of the source's weights (the microsoft/Florence-2 checkpoints are
    float16), so the native model is built and saved in it instead of twice its size in float32;
    float32 where the source mixes dtypes."""
    dtypes = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def generation_config(source: Path, base: str) -> tuple[GenerationConfig | None, str]:
    """The decoding settings to save with the native model, and where they came from: the source
    folder's `generation_config.json` (a fine-tuned model's own), else `base`'s, else (None) those
    transformers derives from the config. The settings name tokens, not modules, so they carry
    over unchanged between the two layouts."""
    from transformers import GenerationConfig

    for where in (source, base):
        try:
            return GenerationConfig.from_pretrained(where), str(where)
        except (OSError, ValueError):  # no such file (or no such repo offline): the next one
            continue
    return None, "the config (neither has a generation_config.json)"


def convert_adapter(source: Path, out: Path, base: str | None = None) -> Path:
    """A peft adapter whose keys and `target_modules` name the native model's modules, on `base`
    at its default revision."""
    config = _read_json(source / "adapter_config.json")
    base = base or _default_base(source / "adapter_config.json", "base_model_name_or_path")
    for field in ("rank_pattern", "alpha_pattern"):
        if config.get(field):
            raise ConvertError(
                f"{source}: adapter_config.json has a {field} (per-module settings by remote-code module names); "
                "converting it is not supported: remove it or convert by hand"
            )
    weights, targets = convert_adapter_state(_read_weights(source), str(source))
    # `revision` is a revision of the source's base repo (microsoft/Florence-2-base-ft's adapters
    # name `refs/pr/6`): peft and f2tune would ask the new base for it. `--base` names no revision,
    # so the converted adapter names none: the base repo's default branch.
    dropped = f"; revision {config['revision']} of the source's base dropped" if config.get("revision") else ""
    config.update(base_model_name_or_path=base, target_modules=sorted(targets), revision=None)
    if config.get("task_type"):
        # Roboflow-style adapters say CAUSAL_LM, others SEQ_2_SEQ_LM; with any task type
        # `peft.AutoPeftModel.from_pretrained` refuses the folder ("Cannot use AutoPeftModel with a
        # task type"). f2tune's own exports name none.
        dropped += f"; task type {config['task_type']} dropped"
        config["task_type"] = None
    with atomic_folder(out, "convert") as staging, safetensors_os_errors(out):
        save_file(weights, str(staging / "adapter_model.safetensors"), metadata={"format": "pt"})
        (staging / "adapter_config.json").write_text(json.dumps(config, indent=2))
    say(f"convert: {source} -> {out} (peft adapter on {base}, {len(targets)} target modules{dropped})")
    return out


def convert_adapter_state(state: dict[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Rename adapter keys module by module; returns the weights and the native LoRA module names.

    LoRA keys are `base_model.model.<module>.lora_A.weight`: `<module>.weight` goes through the
    same rules as a model weight. Other keys (`modules_to_save`) are whole weights.
    """
    native: dict[str, torch.Tensor] = {}
    targets: set[str] = set()
    unknown: list[str] = []
    for key, tensor in state.items():
        inner = key.removeprefix(_PEFT_PREFIX)
        lora = _LORA_KEY.fullmatch(inner)
        probe = f"{lora['module']}.weight" if lora else inner
        found = match_rule(probe) if key.startswith(_PEFT_PREFIX) else None
        if found is None or found[1] is None or found[0].transpose:
            unknown.append(key)
            continue
        target = found[1]
        if lora:
            module = target.removesuffix(".weight")
            targets.add(module)
            target = f"{module}.{lora['part']}"
        native[_PEFT_PREFIX + target] = tensor.contiguous()
    if unknown:
        raise ConvertError(unknown_keys_message(unknown, where))
    return native, targets


def _load_base(base: str, named: str, load: Callable[[str], T]) -> T:
    """`load(base)` (its config or processor), or one message for a base that cannot be loaded
    (offline, or a mistyped folder), worded as `f2tune.model.loading` words a model it cannot load:
    transformers' own report runs to a paragraph under a traceback."""
    from f2tune.model.loading import no_folder

    looks_local = base.startswith(("/", ".", "~")) or base.count("/") > 1
    if looks_local and not Path(base).expanduser().is_dir():
        raise ModelLoadError(f"{named}: {no_folder(base)}")
    try:
        return load(base)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"cannot load {named}: {first_sentence(err).rstrip('.')}. Give a Hub id you can reach, or a local "
            "folder of a native Florence-2 model of the source's size holding config.json and the processor files "
            "(offline, only local folders work)"
        ) from None


def _read_weights(source: Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, or of every (shard) file in a folder."""
    if source.is_file():
        files = [source]
    else:
        files = sorted(source.glob("*.safetensors")) or sorted(source.glob("*.bin"))
    if not files:
        raise ConvertError(f"{source}: no .safetensors or .bin weights found")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            if path.suffix == ".safetensors":
                state.update(load_file(str(path)))
            else:
                state.update(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as err:  # a file cut short or of another kind: whatever its reader raises
            raise ConvertError(
                f"{path}: cannot read its weights ({first_sentence(err)}); is the file whole (a finished download)?"
            ) from None
    return state


def _refuse_training_checkpoint(source: Path) -> None:
    """Refuse a training checkpoint at once, saying what makes a model of it: its keys would be
    named one by one as matching no conversion rule."""
    if source.is_file() and source.suffix == ".ckpt":
        raise ConvertError(
            f"{source} is an f2tune training checkpoint, already native: `f2tune export {source} --out DIR` makes "
            "a model or adapter folder of it (convert reads microsoft/Florence-2-* remote-code checkpoints)"
        )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConvertError(f"{path}: not valid JSON ({err})") from None


def _default_base(config_file: Path, field: str) -> str:
    """florence-community/Florence-2-X for a source whose config names microsoft/Florence-2-X."""
    named = _read_json(config_file).get(field, "") if config_file.is_file() else ""
    match = _REMOTE_BASE.search(named or "")
    if not match:
        said = f"{config_file} names {named!r}" if named else f"no {config_file.name} in {config_file.parent} names it"
        raise ConvertError(
            f"cannot tell which native model to convert into ({said}); "
            "pass --base florence-community/Florence-2-base (or -large, or a local native folder of the same size)"
        )
    return f"florence-community/{match.group(1)}"
