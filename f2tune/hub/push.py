"""Upload an export folder to the Hugging Face Hub (`f2tune push`, or `export.push_to` after fit).

Uploading is the step most likely to fail for reasons outside the run (no network, an expired or
read-only token), so every failure becomes one line that says what to do, the local export is
only read, and the token never appears in a message: it is scrubbed from whatever the client says.

The folder is checked before anything is sent: a run folder, another command's output, an export
an interrupted command left half-written or one missing its weights would otherwise be published
as a model that does not load. It is uploaded in one commit, so a repo never holds half of it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from f2tune.errors import F2TuneError
from f2tune.export.atomic import OUTPUT_MARKER
from f2tune.hub.names import REPO_PLACEHOLDER, REPO_PLACEHOLDER_NOTE, is_hub_id, repo_id_problem
from f2tune.log import warn

_STAGING = re.compile(r"^\.(?P<target>.+)\.tmp-[^/]+$")
"""The temporary folder `atomic_folder` writes an output in before renaming it (left by a kill)."""

PUSHABLE_OUTPUTS = (None, "export", "convert")
"""What may have written a folder that is pushed (`OUTPUT_MARKER`): f2tune's exports and conversions,
or not f2tune (a model folder made otherwise)."""

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
"""A fast tokenizer's one file, or a BART tokenizer's vocabulary (beside merges.txt)."""
SKIPPED = {OUTPUT_MARKER, ".git", ".cache"}
"""Local bookkeeping that stays out of the upload (which f2tune command wrote the folder; git and
Hub caches, as `upload_folder` leaves them out)."""


class PushError(F2TuneError):
    """The export could not be uploaded (bad folder, no token, refused token, no network)."""


def push_folder(
    folder: str | Path,
    repo: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create `repo` if needed (as a model repo) and upload `folder` to `revision` in one commit;
    return the commit URL. The uploaded README.md names `repo` where the card's usage code has
    the placeholder for it (the local file is unchanged).

    `token`: defaults to HF_TOKEN or the `hf auth login` cache. `endpoint`: defaults to HF_ENDPOINT
    read now (huggingface_hub reads it once at import), else the public Hub.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = check_export(folder)
    token = check_push_target(repo, "--repo", token)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    contents = {name: _content(folder, name, repo, revision) for name in files}
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in contents.items()]
    try:
        validate = getattr(api, "_validate_yaml", None)  # HfApi's own, private: skipped if it goes away
        if validate is not None and "README.md" in contents:
            # The metadata check `create_commit` makes, made before the repo is created: a card the Hub
            # refuses would otherwise leave a new, empty repo behind.
            validate(_text(contents["README.md"]), repo_type="model")
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        if private and not api.repo_info(repo, repo_type="model").private:
            raise PushError(
                f"{repo} exists and is public; --private only makes a new repo private, so nothing was uploaded: "
                f"make {repo} private in its settings on the Hub, or push without --private; "
                f"the local export {folder} is unchanged"
            )
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo, operations, commit_message=f"Upload {folder.name} with f2tune", revision=revision, repo_type="model"
        )
    except PushError:
        raise
    except Exception as err:  # the client raises many types (HTTP, transport, offline mode): all one message
        raise PushError(_explain(err, folder, repo, endpoint).replace(token, "***")) from None
    return info.commit_url


def check_export(folder: Path) -> list[str]:
    """The files of the export `folder` to upload (paths relative to it), once it is a whole export:
    else `PushError` saying what it is and what to push instead. Reads only file names and the
    safetensors headers (a truncated weights file fails there, in milliseconds)."""
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise PushError(f"{folder} {what}: give an export folder (`f2tune export RUN --out DIR` writes one)")
    if staging := _STAGING.match(folder.name):
        raise PushError(
            f"{folder} is an export an interrupted f2tune command left unfinished (a finished one is renamed to "
            f"{staging['target']}); export again with `f2tune export RUN --out DIR`"
        )
    if (folder / "config.yaml").is_file() and (folder / "checkpoints").is_dir():
        raise PushError(
            f"{folder} is a run folder, not an export: push its export ({folder / 'export'}), or write one of any "
            f"of its checkpoints with `f2tune export {folder} --out DIR`"
        )
    marker = folder / OUTPUT_MARKER
    written_by = marker.read_text().strip() if marker.is_file() else None
    if written_by not in PUSHABLE_OUTPUTS:
        raise PushError(f"{folder} is the {written_by} output of f2tune, not an export; give an export folder")
    if (folder / "adapter_config.json").is_file():
        _require(folder, ADAPTER_WEIGHTS, "the adapter's weights")
        _warn_local_base(folder)
    elif (folder / "config.json").is_file():
        _require(folder, MODEL_WEIGHTS, "the model's weights")
        _require(folder, PROCESSOR_FILES, "the processor (`AutoProcessor.from_pretrained` reads it)")
        _require(folder, TOKENIZER_FILES, "the tokenizer (`AutoProcessor.from_pretrained` reads it)")
        _require_shards(folder)
    else:
        raise PushError(
            f"{folder} is not an export folder (no adapter_config.json or config.json); "
            "write one with `f2tune export RUN --out DIR` first"
        )
    files = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and not SKIPPED & set(path.relative_to(folder).parts)
    )
    _check_safetensors(folder, files)
    if "README.md" not in files:
        warn(f"push: {folder} has no README.md: the Hub page will show no model card")
    return files


def _require(folder: Path, names: tuple[str, ...], what: str) -> None:
    if not any((folder / name).is_file() for name in names):
        raise PushError(
            f"{folder} lacks {what} (none of {', '.join(names)}): an incomplete export, which would not load; "
            "export again with `f2tune export RUN --out DIR`"
        )


def _require_shards(folder: Path) -> None:
    """Every shard a sharded model's index names (a copy that stopped midway lacks the last ones)."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            shards = set(json.loads((folder / index).read_text()).get("weight_map", {}).values())
            missing = sorted(name for name in shards if not (folder / name).is_file())
            if missing:
                raise PushError(f"{folder}: {index} names shards that are not there ({', '.join(missing[:3])})")


def _warn_local_base(folder: Path) -> None:
    """An adapter whose config names a local base loads nowhere else (`AutoPeftModel` reads it):
    said, not refused, since a team sharing one file system may mean it."""
    try:
        base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    except (OSError, ValueError):
        return
    if base and not is_hub_id(base):
        warn(
            f"push: {folder}'s adapter_config.json names a local base model ({base}): those who download it need "
            "that base themselves; train from a Hub model (model.name_or_path) to name one they can load"
        )


def _check_safetensors(folder: Path, files: list[str]) -> None:
    from safetensors import SafetensorError, safe_open

    for name in files:
        if name.endswith(".safetensors"):
            try:
                with safe_open(str(folder / name), "pt"):
                    pass
            except (SafetensorError, OSError) as err:
                raise PushError(
                    f"{folder / name} is not a whole safetensors file ({err}): a truncated or damaged copy; "
                    "export again with `f2tune export RUN --out DIR`"
                ) from None


def _content(folder: Path, name: str, repo: str, revision: str | None) -> Path | bytes:
    """What to upload for `name`: the file itself, or for the card its text with the usage code
    naming `repo` (and `revision`) instead of the placeholder for it, so it runs as shown on the Hub,
    and without the sentence that explains the placeholder."""
    path = folder / name
    if name != "README.md":
        return path
    text = path.read_text(encoding="utf-8")
    if REPO_PLACEHOLDER not in text:
        return path
    named = json.dumps(repo) + (f", revision={json.dumps(revision)}" if revision else "")
    return text.replace(REPO_PLACEHOLDER_NOTE, "").replace(REPO_PLACEHOLDER, named).encode("utf-8")


def _text(content: Path | bytes) -> str:
    return content.read_text(encoding="utf-8") if isinstance(content, Path) else content.decode("utf-8")


def check_push_target(repo: str, option: str, token: str | None = None) -> str:
    """The token to push `repo` with, once the repo id has the Hub's form and a token is there;
    else `PushError` naming `option`, where the repo was given. Also called before a fit that
    pushes at its end (`export.push_to`), so a typo stops it before the training, not after it."""
    from huggingface_hub import get_token

    problem = repo_id_problem(repo)
    if problem:
        raise PushError(
            f"{option} {repo!r}: expected a Hub repo id of the form user/name (or org/name); the Hub would refuse "
            f"this one ({problem}): give {option} another repo id, such as user/florence2-lora"
        )
    token = token or get_token()
    if not token:
        raise PushError(
            f"no Hugging Face token to push to {repo}, which {option} names: set HF_TOKEN or run `hf auth login` "
            "(a token with write access)"
        )
    return token


def _explain(err: Exception, folder: Path, repo: str, endpoint: str) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    text = str(err).strip()
    detail = text.splitlines()[0] if text else type(err).__name__
    untouched = f"the local export {folder} is unchanged"
    if status in (401, 403):
        return (
            f"the Hub at {endpoint} refused the token for {repo} (HTTP {status}): set HF_TOKEN or run "
            f"`hf auth login` with a token that can write to {repo.split('/')[0]}; {untouched}"
        )
    if status is None and _is_transport_error(err):
        return (
            f"cannot reach the Hub at {endpoint} to push {repo} ({type(err).__name__}: {detail}); check the "
            f"network, HF_ENDPOINT and HF_HUB_OFFLINE, then run `f2tune push {folder} --repo {repo}` again; {untouched}"
        )
    if isinstance(err, ValueError) and text.startswith("Invalid metadata in README.md"):
        problems = "; ".join(line.lstrip("- ").strip() for line in text.splitlines()[1:] if line.strip())
        return (
            f"the Hub refused the metadata of {folder / 'README.md'} ({problems or detail}); correct its front "
            f"matter (between the --- lines) and push again; nothing was uploaded to {repo}"
        )
    reason = f"HTTP {status}" if status else type(err).__name__
    return f"pushing to {repo} at {endpoint} failed ({reason}: {detail}); {untouched}"


def _is_transport_error(err: Exception) -> bool:
    """Connection refused, DNS, timeouts, offline mode: OSError, or the HTTP client's TransportError
    (matched by name: huggingface_hub's HTTP client package is an implementation detail)."""
    return isinstance(err, OSError) or any(cls.__name__ == "TransportError" for cls in type(err).__mro__)
