"""Upload an export folder to the Hugging Face Hub (`f2tune push`, or `export.push_to` after fit).

Uploading is the step most likely to fail for reasons outside the run (no network, an expired or
read-only token), so every failure becomes one line that says what to do, the local export is
only read, and the token never appears in a message: it is scrubbed from whatever the client says.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from f2tune.errors import F2TuneError
from f2tune.export.atomic import OUTPUT_MARKER

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EXPORT_MARKERS = ("adapter_config.json", "config.json")
"""An export holds one of these: a peft adapter or a transformers model folder."""


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
    """Create `repo` if needed (as a model repo) and upload `folder` to `revision`; return the commit URL.

    `token`: defaults to HF_TOKEN or the `hf auth login` cache. `endpoint`: defaults to HF_ENDPOINT
    read now (huggingface_hub reads it once at import), else the public Hub.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir() or not any((folder / name).is_file() for name in EXPORT_MARKERS):
        raise PushError(
            f"{folder} is not an export folder (no adapter_config.json or config.json); "
            "write one with `f2tune export RUN --out DIR` first"
        )
    token = check_push_target(repo, "--repo", token)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo,
            revision=revision,
            commit_message=f"Upload {folder.name} with f2tune",
            ignore_patterns=[OUTPUT_MARKER],  # which f2tune command wrote the folder: local bookkeeping
        )
    except Exception as err:  # the client raises many types (HTTP, transport, offline mode): all one message
        raise PushError(_explain(err, folder, repo, endpoint).replace(token, "***")) from None
    return info.commit_url


def check_push_target(repo: str, option: str, token: str | None = None) -> str:
    """The token to push `repo` with, once the repo id has the Hub's form and a token is there;
    else `PushError` naming `option`, where the repo was given. Also called before a fit that
    pushes at its end (`export.push_to`), so a typo stops it before the training, not after it."""
    from huggingface_hub import get_token

    if not _REPO_ID.match(repo):
        raise PushError(f"{option} {repo!r}: expected a Hub repo id of the form user/name (or org/name)")
    token = token or get_token()
    if not token:
        raise PushError(
            f"{option}: no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)"
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
    reason = f"HTTP {status}" if status else type(err).__name__
    return f"pushing to {repo} at {endpoint} failed ({reason}: {detail}); {untouched}"


def _is_transport_error(err: Exception) -> bool:
    """Connection refused, DNS, timeouts, offline mode: OSError, or the HTTP client's TransportError
    (matched by name: huggingface_hub's HTTP client package is an implementation detail)."""
    return isinstance(err, OSError) or any(cls.__name__ == "TransportError" for cls in type(err).__mro__)
