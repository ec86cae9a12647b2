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
from torchmetrics.text import BLEUScore
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


class Bleu4(BLEUScore):
    """Corpus BLEU-4 (torchmetrics) over `tokenize`d text, with every reference of a sample.

    The references go to torchmetrics shortest first: the brevity penalty takes the reference length
    closest to the candidate's, and where two are equally close torchmetrics takes the first one, the
    COCO evaluation (like NLTK) the shorter.
    """

    keys = ("bleu4",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(n_gram=4, **kwargs)

    def update(self, predictions: Sequence[Prediction], references: Sequence[Reference]) -> None:
        """Add one batch; `references[i]` are the captions of the image `predictions[i]` describes."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        super().update(
            [tokenized(text_of(p)) for p in predictions],
            [sorted((tokenized(r) for r in texts_of(ref)), key=lambda r: len(r.split())) for ref in references],
        )

    def compute(self) -> dict[str, float]:
        """`bleu4` over every sample seen."""
        return {"bleu4": float(super().compute())}


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
    F-measure that weights recall by beta = 1.2; 0 when nothing matches."""
    precision = recall = 0.0
    for reference in references:
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
