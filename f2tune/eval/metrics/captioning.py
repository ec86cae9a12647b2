"""Caption metrics: CIDEr-D (the COCO captioning metric), BLEU-4 and ROUGE-L.

All three see the same words: `tokenize` lower-cases and turns punctuation into spaces. That stands
in for the PTB tokenizer of the COCO evaluation (Java) and needs no download (nltk's punkt cannot be
fetched offline), at the cost of small differences on contractions ("man's" -> "man s").

Predictions are the generated captions (strings, or `Annotation`s with `text`); each reference is
one caption, several, or an `Annotation` (see `texts_of`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.functional.text import rouge_score
from torchmetrics.text import BLEUScore
from torchmetrics.utilities import dim_zero_cat

from f2tune.eval.metrics import PerSampleMean, Prediction, Reference, text_of, texts_of

_PUNCTUATION = re.compile(r"[^\w\s]|_")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, punctuation replaced by spaces."""
    return _PUNCTUATION.sub(" ", text.lower()).split()


def tokenized(text: str) -> str:
    """`tokenize`'s words joined by single spaces (what whitespace-splitting scorers expect)."""
    return " ".join(tokenize(text))


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
    """Corpus BLEU-4 (torchmetrics) over `tokenize`d text, with every reference of a sample."""

    keys = ("bleu4",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(n_gram=4, **kwargs)

    def update(self, predictions: Sequence[Prediction], references: Sequence[Reference]) -> None:
        """Add one batch; `references[i]` are the captions of the image `predictions[i]` describes."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        super().update(
            [tokenized(text_of(p)) for p in predictions], [[tokenized(r) for r in texts_of(ref)] for ref in references]
        )

    def compute(self) -> dict[str, float]:
        """`bleu4` over every sample seen."""
        return {"bleu4": float(super().compute())}


class RougeL(PerSampleMean):
    """ROUGE-L F-measure (torchmetrics' `rouge_score`), the best over a sample's references, averaged
    over samples.

    Not a `ROUGEScore` subclass: that keeps one tensor per sample in lists that DDP gathers element
    by element, which hangs or fails when processes saw different numbers of samples; a per-sample
    score in sum/count states does not. Only `rougeL` is asked for, without stemming: `rougeLsum` and
    the stemmer need nltk data that cannot be downloaded offline.
    """

    key = "rougeL"

    def score(self, prediction: Prediction, reference: Reference) -> float:
        result = rouge_score(
            text_of(prediction),
            [texts_of(reference)],
            rouge_keys=("rougeL",),
            normalizer=tokenized,
            tokenizer=str.split,
        )
        return float(result["rougeL_fmeasure"])
