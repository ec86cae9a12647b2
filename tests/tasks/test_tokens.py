"""Task-token prompts: Florence-2's 15 tokens are known; typos and misuse are explained."""

from __future__ import annotations

import pytest

from f2tune.tasks import TASKS_WITH_INPUT, TASKS_WITHOUT_INPUT, check_prompt


def test_fifteen_tasks_all_accepted():
    assert len(set(TASKS_WITHOUT_INPUT) | set(TASKS_WITH_INPUT)) == 15
    assert all(check_prompt(t) is None for t in TASKS_WITHOUT_INPUT)
    assert all(check_prompt(f"{t}a dog") is None for t in TASKS_WITH_INPUT)


def test_tasks_match_the_processor(processor):
    assert set(TASKS_WITHOUT_INPUT) == set(processor.task_prompts_without_inputs)
    assert set(TASKS_WITH_INPUT) == set(processor.task_prompts_with_input)


@pytest.mark.parametrize("prompt", ["What colour is the car?", "describe <this>", "<loc_1> where"])
def test_free_text_is_fine(prompt):
    assert check_prompt(prompt) is None


def test_unknown_token_lists_the_known_ones():
    reason = check_prompt("<CAPTIONS>")
    assert reason.startswith("unknown task token <CAPTIONS>") and "<MORE_DETAILED_CAPTION>" in reason


@pytest.mark.parametrize(
    ("prompt", "guess"),
    [
        ("<CAPTON>", " (did you mean <CAPTION>?);"),
        ("<OPEN_VOCAB_DETECTION>x", " (did you mean <OPEN_VOCABULARY_DETECTION>?);"),
        ("<SEGMENT>", ";"),
    ],
)
def test_unknown_token_suggests_the_close_ones(prompt, guess):
    token = prompt.split(">")[0] + ">"
    assert check_prompt(prompt).startswith(f"unknown task token {token}{guess} known task tokens: <CAPTION>, ")


def test_no_input_token_with_text_is_refused():
    assert "takes no input" in check_prompt("<OD> only cats")


@pytest.mark.parametrize("prompt", ["<od>", "<Caption>", "<caption_to_phrase_grounding>a cat"])
def test_a_task_token_in_another_case_is_refused_not_trained_as_free_text(prompt):
    token = prompt.split(">")[0] + ">"
    assert check_prompt(prompt) == (
        f"{token} is no task token (they are upper case) and would be read as free text: write {token.upper()}"
    )


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        (" <CAPTION>", "task token <CAPTION> takes no input and must be the whole prompt, but the prompt has spaces"),
        ("<OD>\n", "task token <OD> takes no input and must be the whole prompt, but the prompt has spaces"),
        ("What is <OD> here?", "task token <OD> must open the prompt"),
        ("say <REGION_TO_CATEGORY> now", "task token <REGION_TO_CATEGORY> must open the prompt"),
        ("<OPEN_VOCABULARY_DETECTION>a cat <OD>", "a prompt takes one task token, but"),
        ("<CAPTION_TO_PHRASE_GROUNDING>x <REGION_TO_OCR>", "a prompt takes one task token, but"),
    ],
)
def test_a_task_token_the_processor_would_refuse_or_rewrite_is_refused(processor, prompt, reason):
    """The processor rewrites a known token wherever it stands: one that is not a no-input prompt's
    whole or the start of one with input raises there (mid-epoch) or turns free text into a task."""
    assert check_prompt(prompt).startswith(reason)
    try:
        rewritten = processor._construct_prompts([prompt])[0]
    except ValueError as err:
        assert "should be the only content in the prompt" in str(err)
    else:
        assert rewritten != prompt  # rewritten as a task it was not read as


@pytest.mark.parametrize(
    "prompt", ["<OD>", " <CAPTION_TO_PHRASE_GROUNDING>a dog", "<REGION_TO_OCR><loc_1><loc_2><loc_3><loc_4>", "a <FOO>"]
)
def test_an_accepted_prompt_is_one_the_processor_takes(processor, prompt):
    assert check_prompt(prompt) is None
    processor._construct_prompts([prompt])
