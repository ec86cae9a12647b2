"""The caption metrics against numbers pycocoevalcap 1.2 computed (with its Java PTB tokenizer), and by hand."""

from __future__ import annotations

import math
import random

import pytest

from f2tune.eval.metrics import build_metric
from f2tune.eval.metrics.caption_words import tokenized
from f2tune.eval.metrics.captioning import Bleu4, CiderD, RougeL, bleu_counts, cider_d, corpus_bleu

CANDIDATES = [
    "A man is riding a horse on the beach.",
    "Two dogs play in the snow!",
    "a red bus parked on the street",
    "a plate of food",
]
REFERENCES = [
    [
        "A man rides a horse along the beach.",
        "Someone riding a brown horse on sand.",
        "a person on a horse at the beach",
    ],
    ["Two dogs are playing in the snow.", "dogs running through snow"],
    ["A red double-decker bus on a city street.", "a bus parked by the road", "red bus in the street"],
    ["A plate with food on it.", "a meal on a white plate"],
]
# pycocoevalcap 1.2: PTBTokenizer, then Cider, on the texts above ("double-decker" stays one word)
PYCOCOEVALCAP_SCORES = [2.008240681325667, 2.2851527100966345, 2.2656552344473777, 1.4009837914558696]
PYCOCOEVALCAP_CORPUS = 1.990008104331387


def test_cider_d_matches_the_recorded_pycocoevalcap_numbers() -> None:
    scores = cider_d([tokenized(c) for c in CANDIDATES], [[tokenized(r) for r in refs] for refs in REFERENCES])
    assert scores == pytest.approx(PYCOCOEVALCAP_SCORES, abs=1e-9)


def test_cider_d_matches_pycocoevalcap_directly() -> None:
    cider_scorer = pytest.importorskip("pycocoevalcap.cider.cider_scorer")
    candidates = [tokenized(c) for c in CANDIDATES] + ["a horse", "snow snow snow snow", ""]
    references = [[tokenized(r) for r in refs] for refs in REFERENCES] + [
        ["a brown horse standing in a field"],
        ["fresh snow on a hill", "snow covered trees"],
        ["an empty room"],
    ]
    scorer = cider_scorer.CiderScorer(n=4, sigma=6.0)
    for candidate, refs in zip(candidates, references):
        scorer += (candidate, refs)
    corpus, expected = scorer.compute_score()
    assert cider_d(candidates, references) == pytest.approx(list(expected), abs=1e-9)
    metric = CiderD()
    metric.update(candidates, references)
    assert metric.compute()["cider"] == pytest.approx(float(corpus), abs=1e-9)


def test_cider_keeps_hyphenated_words_whole() -> None:
    metric = CiderD()
    metric.update(
        ["a hot dog on a white plate", "a cat on a bed"],
        [["a hot-dog on a white plate", "a hot-dog with mustard"], ["a cat sleeping on a bed", "a cat on a bed"]],
    )
    # pycocoevalcap 1.2 (PTBTokenizer, then Cider); "hot-dog" is one word, so "hot dog" matches it nowhere
    assert metric.compute()["cider"] == pytest.approx(4.6221787706674125, abs=1e-9)


def test_cider_metric_accumulates_batches_and_merges_like_ddp() -> None:
    metric = build_metric("cider")
    metric.update(CANDIDATES[:1], REFERENCES[:1])
    metric.update(CANDIDATES[1:2], REFERENCES[1:2])
    other_process = CiderD()
    other_process.update(CANDIDATES[2:], REFERENCES[2:])
    metric.merge_state(other_process)  # the "cat" states concatenate, as DDP sync does
    assert metric.compute() == {"cider": pytest.approx(PYCOCOEVALCAP_CORPUS, abs=1e-9)}


def test_cider_takes_annotations_and_single_references() -> None:
    metric = CiderD()
    metric.update([{"text": c} for c in CANDIDATES[:2]], [{"answers": REFERENCES[0]}, REFERENCES[1]])
    metric.update(CANDIDATES[2:], [REFERENCES[2], {"text": REFERENCES[3][0], "answers": REFERENCES[3]}])
    assert metric.compute()["cider"] == pytest.approx(PYCOCOEVALCAP_CORPUS, abs=1e-9)
    single = CiderD()
    single.update(["a cat", "a dog"], ["a cat", "the dog"])
    assert single.compute()["cider"] > 0


def test_cider_before_any_update_is_nan() -> None:
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(CiderD().compute()["cider"])


def test_bleu4_by_hand() -> None:
    metric = Bleu4()
    metric.update(["The cat sat on a mat."], [["the cat sat on the mat", "a dog"]])
    # 1..4-gram precisions 6/6 ("a" is in the second reference), 3/5, 2/4, 1/3; no brevity penalty
    expected = (6 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert metric.compute() == {"bleu4": pytest.approx(expected, abs=1e-6)}
    perfect = build_metric("bleu4")
    perfect.update(["A man rides a horse."], ["a man rides a horse"])
    assert perfect.compute()["bleu4"] == pytest.approx(1.0)


def test_bleu4_takes_the_shorter_of_equally_close_reference_lengths() -> None:
    metric = Bleu4()
    # 4 and 6 words are equally close to 5: the shorter counts, so no brevity penalty (pycocoevalcap 1.2: 0.99999999968)
    metric.update(["a b c d e"], [["a b c d e f", "a b c d"]])
    assert metric.compute()["bleu4"] == pytest.approx(1.0, abs=1e-6)


# pycocoevalcap 1.2's Bleu(4).compute_score (option "closest") on these tokenized corpora: BLEU-1..4. Where an
# n-gram precision is 0 its epsilons (1e-15 over the count + 1e-9) keep the scores above 0.
BLEU_CORPORA = {
    "no 3-gram matched": [("a man riding a horse", ["a man rides a horse", "a person on a horse"])],
    "no 4-gram matched": [("a dog runs on the grass", ["a dog runs fast on the grass"])],
    "no 3- or 4-grams to match": [("a cat", ["a cat sitting"]), ("two dogs", ["two dogs", "dogs"])],
    "an empty caption": [("a man riding a horse", ["a man rides a horse"]), ("", ["a dog"])],
    "all matched": [("a man rides a horse", ["a man rides a horse"])],
}
PYCOCOEVALCAP_BLEU = {
    "no 3-gram matched": [0.7999999996800004, 0.6324555317648827, 5.108729546934668e-06, 1.6068568370523996e-08],
    "no 4-gram matched": [0.8464817246084536, 0.757116271161685, 0.6236930672719415, 9.0960380903795e-05],
    "no 3- or 4-grams to match": [0.7788007826820048, 0.7788007825846548, 0.00778800782682005, 0.0007788007827306797],
    "an empty caption": [0.5362560366140092, 0.4239476211681309, 3.4244838250848774e-06, 1.0771083489856462e-08],
    "all matched": [0.9999999996000004, 0.9999999995750004, 0.9999999995388893, 0.9999999994791672],
}


def _random_corpus(rng: random.Random) -> list[tuple[str, list[str]]]:
    """A few captions over a small vocabulary, from empty to 7 words: often no 3- or 4-gram matches."""
    vocabulary = "a b c d e f".split()[: rng.randint(2, 6)]

    def caption() -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 7)))

    return [(caption(), [caption() for _ in range(rng.randint(1, 4))]) for _ in range(rng.randint(1, 4))]


def _corpus_bleu(samples: list[tuple[str, list[str]]]) -> list[float]:
    counts = [bleu_counts(c.split(), [r.split() for r in refs]) for c, refs in samples]
    return corpus_bleu([sum(column) for column in zip(*counts)])


@pytest.mark.parametrize("name", BLEU_CORPORA)
def test_bleu_matches_the_recorded_pycocoevalcap_numbers(name: str) -> None:
    samples = BLEU_CORPORA[name]
    assert _corpus_bleu(samples) == pytest.approx(PYCOCOEVALCAP_BLEU[name], rel=1e-12, abs=1e-15)
    metric = Bleu4()
    metric.update(*map(list, zip(*samples)))
    assert metric.compute()["bleu4"] == pytest.approx(PYCOCOEVALCAP_BLEU[name][3], rel=1e-12, abs=1e-15)


def test_bleu_matches_pycocoevalcap_on_random_corpora() -> None:
    bleu_scorer = pytest.importorskip("pycocoevalcap.bleu.bleu_scorer")
    for seed in range(300):
        samples = _random_corpus(random.Random(seed))
        scorer = bleu_scorer.BleuScorer(n=4)
        for candidate, refs in samples:
            scorer += (candidate, refs)
        expected, _ = scorer.compute_score(option="closest")
        assert _corpus_bleu(samples) == pytest.approx(expected, rel=1e-12, abs=1e-15), seed
        metric = Bleu4()
        metric.update(*map(list, zip(*samples)))
        assert metric.compute()["bleu4"] == pytest.approx(expected[3], rel=1e-12, abs=1e-15), seed


def test_rouge_l_combines_the_best_precision_and_recall_with_beta_1_2() -> None:
    metric = RougeL()
    metric.update(
        ["a man riding a horse on a beach"],
        [["a man rides a brown horse", "a person on a horse at the beach near the water"]],
    )
    # LCS "a man a horse" (of 6) and "a on a beach" (of 11): precision 4 / 8, recall the better 4 / 6; best F1
    # would be 0.5714 (4 / 7, against the first); pycocoevalcap 1.2 gives 0.5865384615384615
    precision, recall = 4 / 8, 4 / 6
    expected = (1 + 1.2**2) * precision * recall / (recall + 1.2**2 * precision)
    assert expected == pytest.approx(0.5865384615384615, abs=1e-12)
    assert metric.compute() == {"rougeL": pytest.approx(expected, abs=1e-12)}


def test_rouge_l_by_hand() -> None:
    metric = RougeL()
    # LCS "the cat sat on mat" = 5 of 6 words either way; the better of the two references counts
    metric.update(["The cat sat on a mat."], [["the cat sat on the mat", "a dog barks"]])
    metric.update([{"text": "a dog"}], ["A dog!"])
    assert metric.compute() == {"rougeL": pytest.approx((5 / 6 + 1.0) / 2, abs=1e-6)}


@pytest.mark.parametrize(
    ("candidate", "references", "expected"),
    [("", [""], 1.0), ("", ["a b"], 0.0), ("a b", [""], 0.0), ("", ["a b", ""], 1.0), ("...", ["!"], 1.0)],
)
def test_rouge_l_of_empty_captions_as_pycocoevalcap(candidate: str, references: list[str], expected: float) -> None:
    # pycocoevalcap 1.2's Rouge().calc_score([candidate], references) on the tokenized texts: it splits at " ", so
    # an empty caption is one empty word, which matches an empty reference in full ("..." and "!" tokenize to none)
    metric = RougeL()
    metric.update([candidate], [references])
    assert metric.compute() == {"rougeL": expected}
