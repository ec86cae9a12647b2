"""What the Hub accepts as a repo id, and the placeholder an export's card uses for its own.

A module of its own, without torch or transformers, so that `f2tune push` starts in a moment while
the card writer and the uploader still agree on both.
"""

from __future__ import annotations

REPO_PLACEHOLDER = '"THIS_FOLDER_OR_REPO"'
"""The export's own name in the card's usage code, quoted as it is there: `f2tune push` writes the
repo id in its place in the uploaded card."""

REPO_PLACEHOLDER_NOTE = (
    "`THIS_FOLDER_OR_REPO` is this folder's path, or its Hub repo id (`f2tune push` writes the id in the card it "
    "uploads). "
)
"""The card's sentence on the placeholder, which `f2tune push` leaves out of the card it uploads,
where the code names the repo."""


def hub_id_problem(name: str) -> str | None:
    """Why the Hub would refuse `name` as a repo id (`name` or `owner/name`), or None.

    The rules are huggingface_hub's own (`validate_repo_id`, checked offline): a local path
    (`./florence`, `/runs/t/base_model`, `a/b/c`) is not an id, nor are `me/x--y`, `me/model-`,
    `me/m.git` or a name over 96 characters. The Hub refuses a card whose `base_model` or `datasets`
    names anything else, and a push to such a repo. Imported here, not at the top, so that loading
    this module stays light."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as err:
        # Its message ends by quoting the id ("...: 'me/x--y'."), which f2tune's messages name already.
        return str(err).split(f": '{name}'")[0].rstrip(".")
    return None


def is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id, not a local path (`hub_id_problem`)."""
    return hub_id_problem(name) is None


def repo_id_problem(name: str) -> str | None:
    """Why the Hub would refuse to create `name` as a repo, or None. Besides `hub_id_problem`, a bare
    name: the Hub needs the owner to create a repo (a bare name is only a legacy id of a few old
    models). `export.push_to` is checked so before a fit, which would otherwise fail its push after
    the training."""
    return "it names no owner" if "/" not in name else hub_id_problem(name)
