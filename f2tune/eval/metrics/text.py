"""Short-answer and transcription metrics: VQA accuracy, exact match, ANLS (DocVQA), CER and WER (OCR).

Predictions are generated texts (strings, or `Annotation`s with `text`); references are one answer,
several (e.g. the 10 human answers of VQAv2), or an `Annotation` (see `texts_of`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torchmetrics.functional.text import edit_distance
from torchmetrics.text import CharErrorRate, WordErrorRate

from f2tune.eval.metrics import PerSampleMean, Prediction, Reference, exact_match, normalize, text_of, texts_of
from f2tune.tasks.schema import Annotation

VQA_HUMANS_FOR_FULL_CREDIT = 3
_NUMBERS = {
    word: str(digit) for digit, word in enumerate("zero one two three four five six seven eight nine ten".split())
} | {"none": "0"}
_ARTICLES = {"a", "an", "the"}
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d)")
_NON_DECIMAL_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
_PUNCTUATION = re.compile(r"[^\w\s.]|_")


def vqa_normalize(answer: str) -> str:
    """The answer normalization of the official VQA evaluation, simplified: lower case, punctuation
    removed (keeping decimal points; "1,000" -> "1000"), articles dropped, number words as digits.
    (The official script also expands contractions and skips normalization when all humans agree.)
    """
    text = _THOUSANDS_COMMA.sub("", answer.lower())
    text = _PUNCTUATION.sub(" ", _NON_DECIMAL_PERIOD.sub(" ", text))
    return " ".join(_NUMBERS.get(word, word) for word in text.split() if word not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(#humans who gave the answer / 3, 1), averaged over the subsets that leave one human out,
    as the official VQA evaluation does (so 3 matching humans of 10 give 0.9, 4 give 1.0).

    With a single reference answer there is no subset to average: it is then exact match after
    normalization.
    """
    answer = vqa_normalize(prediction)
    humans = [vqa_normalize(a) for a in answers]
    if len(humans) == 1:
        return float(answer == humans[0])
    matches = sum(human == answer for human in humans)
    credits = [min(1.0, (matches - (human == answer)) / VQA_HUMANS_FOR_FULL_CREDIT) for human in humans]
    return sum(credits) / len(credits)


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one answer (Biten et al. 2019, DocVQA): the best
    over the references of 1 - edit distance / longer length, counted as 0 when that distance is not
    below `threshold` (a wrong answer should score 0, not partial credit). Texts are `normalize`d.
    """
    answer = normalize(prediction)
    best = 0.0
    for reference in answers:
        reference = normalize(reference)
        longer = max(len(answer), len(reference))
        distance = float(edit_distance(answer, reference)) / longer if longer else 0.0
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


class VQAAccuracy(PerSampleMean):
    """Mean `vqa_accuracy`; each reference holds every human answer of its question."""

    key = "vqa_accuracy"

    def score(self, prediction: Prediction, reference: Reference) -> float:
        return vqa_accuracy(text_of(prediction), texts_of(reference))


class ExactMatch(PerSampleMean):
    """Mean `exact_match`, a sample counting as right when it matches any of its references."""

    key = "exact_match"

    def score(self, prediction: Prediction, reference: Reference) -> float:
        return max(exact_match(text_of(prediction), r) for r in texts_of(reference))


class ANLS(PerSampleMean):
    """Mean `anls` (the DocVQA / InfographicVQA metric)."""

    key = "anls"

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold

    def score(self, prediction: Prediction, reference: Reference) -> float:
        return anls(text_of(prediction), texts_of(reference), self.threshold)


class _TranscriptionRate:
    """Shared by CER and WER: one reference text per prediction, fed to the torchmetrics rate."""

    key: str

    def update(self, predictions: Sequence[Prediction], references: Sequence[str | Annotation]) -> None:
        """Add one batch; `references[i]` is the text `predictions[i]` transcribes."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        super().update([text_of(p) for p in predictions], [text_of(r) for r in references])

    def compute(self) -> dict[str, float]:
        """The rate over every sample seen."""
        return {self.key: float(super().compute())}


class CER(_TranscriptionRate, CharErrorRate):
    """Character error rate (torchmetrics: total edits / total reference characters; lower is better)
    of transcriptions against one reference text each. Case and spacing count: they are OCR errors."""

    key = "cer"


class WER(_TranscriptionRate, WordErrorRate):
    """Word error rate (torchmetrics: total word edits / total reference words, words split at
    whitespace; lower is better) of transcriptions against one reference text each."""

    key = "wer"
