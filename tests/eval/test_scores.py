"""Box scores from token probabilities: one per complete box, label tokens included."""

from __future__ import annotations

import pytest

from f2tune.eval.generate import Generation
from f2tune.eval.scores import box_scores, parse_generation
from f2tune.tasks import TASKS

LOC = {100, 101, 102, 103}
SKIP = {0, 2}


def test_each_box_averages_its_label_and_location_tokens():
    tokens = [0, 5, 6, 100, 101, 102, 103, 7, 100, 101, 102, 103, 2]
    probs = [1.0, 0.5, 0.7, 0.9, 0.9, 0.9, 0.9, 0.3, 0.5, 0.5, 0.5, 0.5, 1.0]
    assert box_scores(tokens, probs, LOC, SKIP) == pytest.approx([(0.5 + 0.7 + 0.9 * 4) / 6, (0.3 + 0.5 * 4) / 5])


def test_a_phrase_with_two_boxes_shares_its_label():
    tokens = [5, 100, 101, 102, 103, 100, 101, 102, 103]
    probs = [0.2, 1, 1, 1, 1, 0.6, 0.6, 0.6, 0.6]
    assert box_scores(tokens, probs, LOC, SKIP) == pytest.approx([(0.2 + 4) / 5, (0.2 + 2.4) / 5])


def test_truncated_boxes_get_no_score():
    tokens = [5, 100, 101, 6, 100, 101, 102, 103, 7, 100]
    probs = [0.1, 0.9, 0.9, 0.4, 0.8, 0.8, 0.8, 0.8, 0.5, 0.5]
    assert box_scores(tokens, probs, LOC, SKIP) == pytest.approx([(0.4 + 3.2) / 5])
    assert box_scores([], [], LOC, SKIP) == []


def test_parse_generation_scores_boxes_and_needs_no_probabilities_elsewhere():
    box = Generation("cat<loc_0><loc_0><loc_999><loc_999>", [5, 100, 101, 102, 103], [0.5, 1.0, 1.0, 1.0, 1.0])
    detected = parse_generation(TASKS["<OD>"], box, (100, 100), (LOC, SKIP))
    assert detected["labels"] == ["cat"] and detected["scores"] == pytest.approx([0.9])
    caption = parse_generation(TASKS["<CAPTION>"], Generation("a cat", [5, 6], None), (100, 100), (LOC, SKIP))
    assert caption == {"text": "a cat"}
    with pytest.raises(ValueError, match="with_probabilities"):
        parse_generation(TASKS["<OD>"], Generation(box.text, box.token_ids, None), (100, 100), (LOC, SKIP))
