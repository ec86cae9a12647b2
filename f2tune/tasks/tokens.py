"""The 15 task tokens Florence-2 was trained with, and a check for prompts that use them.

`Florence2Processor` rewrites a task token into its sentence only when it knows the token; a typo
such as `<CAPTON>` would otherwise be trained on as plain text, silently. So prompts that look like a
task token are checked when the data is read, where the error can still name the file and line.
"""

from __future__ import annotations

import difflib
import re

TASKS_WITHOUT_INPUT: tuple[str, ...] = (
    "<CAPTION>",
    "<DETAILED_CAPTION>",
    "<MORE_DETAILED_CAPTION>",
    "<OD>",
    "<DENSE_REGION_CAPTION>",
    "<REGION_PROPOSAL>",
    "<OCR>",
    "<OCR_WITH_REGION>",
)
"""Tokens that must be the whole prompt."""

TASKS_WITH_INPUT: tuple[str, ...] = (
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<REFERRING_EXPRESSION_SEGMENTATION>",
    "<REGION_TO_SEGMENTATION>",
    "<OPEN_VOCABULARY_DETECTION>",
    "<REGION_TO_CATEGORY>",
    "<REGION_TO_DESCRIPTION>",
    "<REGION_TO_OCR>",
)
"""Tokens followed by text or `<loc_N>` region input."""

_TASK_LIKE = re.compile(r"^<([A-Z][A-Z_]*)>")
_TASK_LIKE_ANYWHERE = re.compile(r"<[A-Z][A-Z_]*>")
_ANY_CASE = re.compile(r"^<([A-Za-z][A-Za-z_]*)>")


def check_prompt(prompt: str) -> str | None:
    """Return why `prompt` is unusable, or None if it is fine.

    A prompt is free text unless it holds an upper-case `<TOKEN>`. One at its start must be one of
    Florence-2's. The processor rewrites a known token wherever it stands: a no-input one must be
    the whole prompt, to the character (else the processor raises, mid-epoch), and a token with
    input must open it and be its only one (elsewhere, free text would silently become that task's
    sentence, and a second token turn up inside the first one's input). One of Florence-2's tokens
    in another case (`<od>`) is refused too: it would train as free text.
    """
    known = [token for token in _TASK_LIKE_ANYWHERE.findall(prompt) if token in TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT]
    match = _TASK_LIKE.match(prompt.strip())
    if match is None:
        return _misplaced_token(prompt, known) or _miscased_token(prompt)
    token = match.group(0)
    if token not in TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT:
        tokens = TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT
        return (
            f"unknown task token {token}{close_tokens(token)}; known task tokens: {', '.join(tokens)} "
            "(or write a free-text prompt)"
        )
    if token in TASKS_WITHOUT_INPUT and prompt != token:
        more = "more text" if prompt.strip() != token else "spaces around it"
        return f"task token {token} takes no input and must be the whole prompt, but the prompt has {more}: {prompt!r}"
    if len(known) > 1:
        return f"a prompt takes one task token, but {prompt!r} holds {', '.join(known)}"
    return None


def _misplaced_token(prompt: str, known: list[str]) -> str | None:
    """A known task token inside free text, which the processor would rewrite all the same."""
    if not known:
        return None
    return f"task token {known[0]} must open the prompt (and a no-input one be all of it): {prompt!r}"


def _miscased_token(prompt: str) -> str | None:
    """`<od>` or `<Caption>`: a task token in the wrong case, which the processor would not rewrite,
    so the model would be trained on it as free text."""
    match = _ANY_CASE.match(prompt.strip())
    if match is None or match.group(0).upper() not in TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT:
        return None
    return (
        f"{match.group(0)} is no task token (they are upper case) and would be read as free text: "
        f"write {match.group(0).upper()}"
    )


def close_tokens(token: str) -> str:
    """` (did you mean <X>?)` for a misspelt task token, or "" when no token is close."""
    close = difflib.get_close_matches(token, TASKS_WITHOUT_INPUT + TASKS_WITH_INPUT, n=2, cutoff=0.7)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
