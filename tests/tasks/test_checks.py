"""Hand-written prompt/target text checked against its task: every answer f2tune itself would
write passes, and the mistakes that would train silently are named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import annotation

from f2tune.tasks import TASKS, build_prompt, format_target, task_of
from f2tune.tasks.checks import SPECIAL_TOKENS, check_text_sample

BOX = "<loc_10><loc_20><loc_30><loc_40>"
TRIANGLE = "<loc_1><loc_2><loc_30><loc_2><loc_15><loc_40>"


@pytest.mark.parametrize("token", list(TASKS))
@settings(max_examples=25, deadline=None)
@given(size=st.tuples(st.integers(1, 2000), st.integers(1, 2000)), data=st.data())
def test_every_answer_the_target_builders_write_passes(token, size, data):
    ann = data.draw(annotation(TASKS[token], size))
    prompt, target = build_prompt(token, ann, size), format_target(token, ann, size)
    assert check_text_sample(task_of(prompt), prompt, target) is None


@pytest.mark.parametrize(
    ("prompt", "target", "problem"),
    [
        ("<OD>", "car<loc_10><loc_20><loc_1000><loc_40>", "the target has <loc_1000>, which is no location token"),
        ("<OD>", "car<loc_1><loc_2><loc_3><loc_04>", "the target has <loc_04>, which is no location token"),
        ("<REGION_TO_CATEGORY><loc_1><loc_2><loc_3><loc_1200>", "car", "the prompt has <loc_1200>"),
        ("What is here?", "a car at <loc_x>", "the target has <loc_x>, which is no location token"),
        ("<OD>", "car<loc_10><loc_20><loc_30>", "4 location tokens per box (x1, y1, x2, y2), but a run of 3"),
        ("<OD>", "car, dog", "<OD> answers have 4 location tokens per box (x1, y1, x2, y2); this one has none"),
        ("<CAPTION_TO_PHRASE_GROUNDING>a cat", f"a cat{BOX}<loc_1>", "but a run of 5 stands here"),
        ("<OCR_WITH_REGION>", f"EXIT{BOX}", "<OCR_WITH_REGION> answers have 8 location tokens per quad"),
        ("<REFERRING_EXPRESSION_SEGMENTATION>the cat", "<loc_1><loc_2><loc_3><loc_4>", "but one has 4"),
        ("<REGION_TO_SEGMENTATION>" + BOX, f"{TRIANGLE}<sep><loc_1><loc_2><loc_3>", "but one has 3"),
        ("<REFERRING_EXPRESSION_SEGMENTATION>the cat", "the cat", "polygons of location tokens; this one has none"),
        ("<CAPTION_TO_PHRASE_GROUNDING>", f"cat{BOX}", "task token <CAPTION_TO_PHRASE_GROUNDING> reads text after it"),
        ("<OPEN_VOCABULARY_DETECTION>a cat", "a cat<loc_1><loc_2><loc_3>", "boxes (4 location tokens) or polygons"),
        ("<REGION_TO_CATEGORY>the cat", "cat", "reads a region after it, four location tokens"),
        ("<REGION_TO_DESCRIPTION><loc_1><loc_2><loc_3>", "a cat", "but the prompt has '<loc_1><loc_2><loc_3>'"),
    ],
)  # fmt: skip
def test_mistakes_that_would_train_silently_are_named(prompt, target, problem):
    assert problem in check_text_sample(task_of(prompt), prompt, target)


@pytest.mark.parametrize(
    ("prompt", "target"),
    [
        ("<OD>", f"car{BOX}{BOX}dog{BOX}"),  # one label before two boxes, as Florence-2 writes runs of a label
        ("<REFERRING_EXPRESSION_SEGMENTATION>the cat", f"{TRIANGLE}<sep>{TRIANGLE}"),
        ("<CAPTION>", "a sign reading <loc> in red"),  # no location token at all
        ("<OPEN_VOCABULARY_DETECTION>a cat", f"a cat<poly>{TRIANGLE}</poly>"),
        ("What is at <loc_5><loc_6><loc_7><loc_8>?", "a cat"),
    ],
)
def test_answers_in_florence2s_own_forms_pass(prompt, target):
    assert check_text_sample(task_of(prompt), prompt, target) is None


def test_the_special_tokens_refused_in_text_are_the_tokenizers(processor):
    """A `</s>` in a target is encoded as the end of the answer, not as text."""
    specials = {token for token in processor.tokenizer.all_special_tokens if not token.startswith("<loc_")}
    assert set(SPECIAL_TOKENS) == specials
    assert "</s>, one of the tokenizer's special tokens" in check_text_sample(TASKS["<CAPTION>"], "<CAPTION>", "a</s>b")
