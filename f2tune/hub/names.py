"""What the Hub accepts as a repo id, and the placeholder an export's card uses for its own.

A module of its own, without torch or transformers, so that `f2tune push` starts in a moment while
the card writer and the uploader still agree on both.
"""

from __future__ import annotations

import re

REPO_PLACEHOLDER = '"THIS_FOLDER_OR_REPO"'
"""The export's own name in the card's usage code, quoted as it is there: `f2tune push` writes the
repo id in its place in the uploaded card (the prose names it unquoted, so only the code changes)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id (`name` or `owner/name`), not a local path: the
    Hub refuses a card whose `base_model` or `datasets` names anything else (its metadata check
    answers "is not valid. Use a model id from https://hf.co/models" and the upload fails)."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def is_repo_id(name: str) -> bool:
    """Whether `name` is a repo id one can push to: `owner/name` (the Hub needs the owner to create
    a repo; a bare name is only a legacy id of a few old models)."""
    return is_hub_id(name) and "/" in name
