"""Caption words against what pycocoevalcap 1.2's Java PTB tokenizer and punctuation removal give."""

from __future__ import annotations

import pytest

from f2tune.eval.metrics.caption_words import tokenize, tokenized


@pytest.mark.parametrize(
    ("text", "words"),  # the words are pycocoevalcap 1.2's: PTBTokenizer, then its punctuation removal
    [
        (
            "A 3.5-year-old boy eats a hot-dog at 10:30 a.m.",
            ["a", "3.5-year-old", "boy", "eats", "a", "hot-dog", "at", "10:30", "a.m."],
        ),
        (
            "The man's dog doesn't like cats; they can't play.",
            ["the", "man", "'s", "dog", "does", "n't", "like", "cats", "they", "ca", "n't", "play"],
        ),
        (
            'A "Welcome" sign (hand-made) near St. Mark\'s Church, etc...',
            ["a", "welcome", "sign", "-lrb-", "hand-made", "-rrb-", "near", "st.", "mark", "'s", "church", "etc."],
        ),
        (
            "Two dogs' toys: 1,000 pieces for $5.99 \u2014 50% off!!",
            ["two", "dogs", "toys", "1,000", "pieces", "for", "$", "5.99", "50", "%", "off", "!!"],
        ),
        (
            "A sign with \u2018No\u2019 & \u201cYes\u201d on it\u2026 \U0001f600 plan B. Then gonna go",
            ["a", "sign", "with", "no", "&", "yes", "on", "it", "plan", "b", "then", "gon", "na", "go"],
        ),
    ],
)
def test_tokenize_matches_the_ptb_tokenizer_of_pycocoevalcap(text: str, words: list[str]) -> None:
    assert tokenize(text) == words
    assert tokenized(text) == " ".join(words)
