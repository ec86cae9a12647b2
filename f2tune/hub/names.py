"""What the Hub accepts as a repo id, and the placeholder an export's card uses for its own.

A module of its own, without torch or transformers, so that `f2tune push` starts in a moment while
the card writer and the uploader still agree on both.
"""

from __future__ import annotations

import re

REPO_PLACEHOLDER = '"THIS_FOLDER_OR_REPO"'
"""The export's own name in the card's usage code, quoted as it is there: `f2tune push` writes the
repo id in its place in the uploaded card."""

REPO_PLACEHOLDER_NOTE = (
    "`THIS_FOLDER_OR_REPO` is this folder's path, or its Hub repo id (`f2tune push` writes the id in the card it "
    "uploads). "
)
"""The card's sentence on the placeholder, which `f2tune push` leaves out of the card it uploads,
where the code names the repo."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id (`name` or `owner/name`), not a local path: the
    Hub refuses a card whose `base_model` or `datasets` names anything else (its metadata check
    answers "is not valid. Use a model id from https://hf.co/models" and the upload fails)."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def repo_id_problem(name: str) -> str | None:
    """Why the Hub would refuse to create `name` as a repo, or None when it has the form of one.

    The rules are huggingface_hub's own (`validate_repo_id`, checked offline): `me/x--y`, `me/model-`,
    `me/m.git` or a name over 96 characters passed a pattern of f2tune's own, so a fit with such an
    `export.push_to` trained to its end and only then failed the push. Imported here, not at the top,
    so that loading this module stays light. A bare name is refused too: the Hub needs the owner to
    create a repo (a bare name is only a legacy id of a few old models)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if "/" not in name:
        return "it names no owner"
    try:
        validate_repo_id(name)
    except HFValidationError as err:
        # Its message ends by quoting the id ("...: 'me/x--y'."), which f2tune's message names already.
        return str(err).split(f": '{name}'")[0].rstrip(".")
    return None
