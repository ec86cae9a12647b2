"""Caption metrics: CIDEr-D (the COCO captioning metric), BLEU-4 and ROUGE-L, as the COCO caption evaluation
(pycocoevalcap) computes them, over the words `f2tune.eval.metrics.caption_words.tokenize` finds, as its PTB
tokenizer would.

Predictions are the generated captions (strings, or `Annotation`s with `text`); each reference is
one caption, several, or an `Annotation` (see `texts_of`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from f2tune.eval.metrics import PerSampleMean, Prediction, Reference, text_of, texts_of
from f2tune.eval.metrics.caption_words import tokenize, tokenized

MAX_N = 4
SIGMA = 6.0
SCALE = 10.0
_CAPTION_SEP, _SAMPLE_END = "\x1f", "\x1e"  # never in tokenized text


def _ngrams(words: list[str]) -> Counter[tuple[str, ...]]:
    """Counts of every 1..MAX_N-gram of a caption."""
    return Counter(tuple(words[i : i + n]) for n in range(1, MAX_N + 1) for i in range(len(words) - n + 1))


def _tfidf(
    counts: Counter[tuple[str, ...]], frequency: Counter[tuple[str, ...]], log_images: float
) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
    """Per n: the tf-idf vector of a caption and its norm. An n-gram no reference has gets df 1."""
    vectors: list[dict[tuple[str, ...], float]] = [{} for _ in range(MAX_N)]
    for gram, count in counts.items():
        vectors[len(gram) - 1][gram] = count * (log_images - math.log(max(1.0, frequency[gram])))
    return vectors, [math.sqrt(sum(v * v for v in vector.values())) for vector in vectors]


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """CIDEr-D of each candidate (Vedantam et al. 2015, as the COCO caption evaluation computes it).

    Over tokenized, space-separated text: tf-idf vectors of 1..4-grams with document frequencies
    counted over each image's references (an n-gram counts once per image), candidate weights
    clipped by the reference's (`min`), a Gaussian length penalty (sigma 6), per n the cosine
    averaged over references, the mean over n, times 10. The corpus score is the mean of the list.
    """
    candidate_grams = [_ngrams(c.split()) for c in candidates]
    reference_grams = [[_ngrams(r.split()) for r in refs] for refs in references]
    frequency: Counter[tuple[str, ...]] = Counter()
    for grams in reference_grams:
        frequency.update(set().union(*grams))
    log_images = math.log(len(candidates)) if candidates else 0.0

    scores = []
    for candidate, grams, refs, ref_grams in zip(candidates, candidate_grams, references, reference_grams, strict=True):
        vector, norm = _tfidf(grams, frequency, log_images)
        total = 0.0
        for ref, ref_gram in zip(refs, ref_grams):
            ref_vector, ref_norm = _tfidf(ref_gram, frequency, log_images)
            penalty = math.exp(-((len(candidate.split()) - len(ref.split())) ** 2) / (2 * SIGMA**2))
            for n in range(MAX_N):
                dot = sum(min(w, ref_vector[n].get(g, 0.0)) * ref_vector[n].get(g, 0.0) for g, w in vector[n].items())
                if norm[n] and ref_norm[n]:
                    dot /= norm[n] * ref_norm[n]
                total += dot * penalty
        scores.append(SCALE * total / MAX_N / max(len(refs), 1))
    return scores


class CiderD(Metric):
    """Corpus CIDEr-D (`cider_d`, as pycocoevalcap reports it: COCO papers print it x100).

    Its idf weights come from the whole reference corpus, so the metric keeps the tokenized text of
    every sample until `compute`. The text is kept as tensors of UTF-8 byte values in a
    `dist_reduce_fx="cat"` state: under DDP every process gathers all samples, and the score equals a
    single-process one. The values are stored in the metric's float dtype, as the placeholder that
    torchmetrics gathers from a process without samples is: gloo and NCCL gather one dtype only.
    """

    keys = ("cider",)
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("records", default=[], dist_reduce_fx="cat")

    def update(self, predictions: Sequence[Prediction], references: Sequence[Reference]) -> None:
        """Add one batch; `references[i]` are the captions of the image `predictions[i]` describes."""
        for prediction, reference in zip(predictions, references, strict=True):
            captions = [tokenized(text_of(prediction))] + [tokenized(r) for r in texts_of(reference)]
            record = (_CAPTION_SEP.join(captions) + _SAMPLE_END).encode()
            codes = torch.frombuffer(bytearray(record), dtype=torch.uint8)
            self.records.append(codes.to(device=self.device, dtype=self.dtype))

    def compute(self) -> dict[str, float]:
        """`cider` over every sample seen (NaN before any update)."""
        data = dim_zero_cat(self.records).to(torch.uint8).cpu().numpy().tobytes().decode() if len(self.records) else ""
        samples = [record.split(_CAPTION_SEP) for record in data.split(_SAMPLE_END)[:-1]]
        if not samples:
            return {"cider": float("nan")}
        scores = cider_d([s[0] for s in samples], [s[1:] for s in samples])
        return {"cider": sum(scores) / len(scores)}


# pycocoevalcap's bleu_scorer adds these to every count it divides: a precision of 0 matched n-grams is then
# ~1e-15 / count, not 0, and a corpus without 4-grams at all (captions under 4 words) gets 1e-15 / 1e-9.
_TINY, _SMALL = 1e-15, 1e-9


def bleu_counts(candidate: Sequence[str], references: Sequence[Sequence[str]]) -> list[int]:
    """What corpus BLEU sums over the captions, as pycocoevalcap's `cook_test` counts it for one: the
    candidate's length, the reference length closest to it (the shorter of two equally close ones), then per
    n = 1..4 the candidate's n-grams, then per n those of them the references hold (each n-gram's count
    clipped by its highest count in any one reference)."""
    grams = _ngrams(list(candidate))
    most: Counter[tuple[str, ...]] = Counter()
    for reference in references:
        most |= _ngrams(list(reference))
    closest = min((abs(len(r) - len(candidate)), len(r)) for r in references)[1]
    guess = [max(0, len(candidate) - n) for n in range(MAX_N)]
    correct = [0] * MAX_N
    for gram, count in grams.items():
        correct[len(gram) - 1] += min(count, most[gram])
    return [len(candidate), closest, *guess, *correct]


def corpus_bleu(totals: Sequence[float]) -> list[float]:
    """BLEU-1..4 from the sums of `bleu_counts` over a corpus, as pycocoevalcap's `BleuScorer.compute_score`
    (option "closest", the COCO evaluation's) computes them, epsilons included, so that the scores equal its
    own (not plain BLEU, which is 0 where an n-gram precision is): the geometric mean of the precisions
    (matched + 1e-15) / (n-grams + 1e-9) up to n, times exp(1 - 1 / ratio) when the length ratio
    (candidate words + 1e-15) / (reference words + 1e-9) is below 1."""
    testlen, reflen = totals[0], totals[1]
    guess, correct = totals[2 : 2 + MAX_N], totals[2 + MAX_N :]
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores: list[float] = []
    product = 1.0
    for n in range(MAX_N):
        product *= (correct[n] + _TINY) / (guess[n] + _SMALL)
        scores.append(product ** (1 / (n + 1)) * penalty)
    return scores


class Bleu4(Metric):
    """Corpus BLEU-4 (`corpus_bleu`, pycocoevalcap's) over `tokenize`d text, with every reference of a sample.

    Not torchmetrics' `BLEUScore`: that gives 0 where pycocoevalcap's epsilons give up to ~6e-4 (no 4-gram
    matched) or ~3e-2 (none to match: captions under 4 words), breaks ties of the closest reference length
    towards the first reference, not the shorter one, and computes in float32 (~1e-7 off elsewhere). The states
    here are the sums of `bleu_counts` in float64, exact integers, which DDP processes sync by summing.
    """

    keys = ("bleu4",)
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("totals", torch.zeros(2 + 2 * MAX_N, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[Prediction], references: Sequence[Reference]) -> None:
        """Add one batch; `references[i]` are the captions of the image `predictions[i]` describes."""
        for prediction, reference in zip(predictions, references, strict=True):
            counts = bleu_counts(tokenize(text_of(prediction)), [tokenize(r) for r in texts_of(reference)])
            self.totals += torch.tensor(counts, dtype=torch.float64, device=self.totals.device)
            self.samples += 1

    def compute(self) -> dict[str, float]:
        """`bleu4` over every sample seen; NaN where none was, as the other metrics say "not measured"
        (pycocoevalcap's 0 for no captions would read as a measured, worst score)."""
        if not self.samples:
            return {"bleu4": float("nan")}
        return {"bleu4": corpus_bleu(self.totals.tolist())[MAX_N - 1]}


ROUGE_BETA = 1.2


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming, one row)."""
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0  # the previous row's value left of column j
        for j, other in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if token == other else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidate: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """ROUGE-L of a tokenized caption as the COCO caption evaluation defines it: the LCS precision and
    recall each at its best over the references (possibly from different ones), combined into an
    F-measure that weights recall by beta = 1.2; 0 when nothing matches.

    pycocoevalcap splits captions at single spaces, so an empty one is one empty word: an empty candidate
    scores 1 against an empty reference (nothing said where nothing was to be said: a perfect match) and 0
    against any other. The empty word stands in for an empty caption here too, for the same scores.
    """
    candidate = candidate or [""]
    precision = recall = 0.0
    for reference in (r or [""] for r in references):
        if common := _lcs_length(candidate, reference):
            precision = max(precision, common / len(candidate))
            recall = max(recall, common / len(reference))
    if not precision:
        return 0.0
    return (1 + ROUGE_BETA**2) * precision * recall / (recall + ROUGE_BETA**2 * precision)


class RougeL(PerSampleMean):
    """ROUGE-L (`rouge_l`, the COCO caption evaluation's) over `tokenize`d text, averaged over samples.

    Not torchmetrics' `ROUGEScore`: that takes the best F1 over the references, where the COCO
    evaluation combines the best precision and the best recall, with beta 1.2; and it keeps one tensor
    per sample in lists that DDP gathers element by element, which hangs or fails when processes saw
    different numbers of samples. A per-sample score in sum/count states does not.
    """

    key = "rougeL"

    def score(self, prediction: Prediction, reference: Reference) -> float:
        return rouge_l(tokenize(text_of(prediction)), [tokenize(r) for r in texts_of(reference)])
