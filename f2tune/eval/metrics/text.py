"""Short-answer and transcription metrics: VQA accuracy, exact match, ANLS (DocVQA), CER and WER (OCR).

Predictions are generated texts (strings, or `Annotation`s with `text`); references are one answer,
several (e.g. the 10 human answers of VQAv2), or an `Annotation` (see `texts_of`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.text import edit_distance
from torchmetrics.text import CharErrorRate, WordErrorRate

from f2tune.eval.metrics import PerSampleMean, Prediction, Reference, exact_match, normalize, text_of, texts_of
from f2tune.tasks.schema import Annotation

VQA_HUMANS_FOR_FULL_CREDIT = 3

# The answer normalization of the official VQA evaluation (vqaEval.py of the VQA API), restated.
# Marks it strips; apostrophes, colons, periods, $, %, #, &, * are not among them.
_VQA_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")  # "3.5" and ".5" keep theirs; "p.m." and "3." lose them
_NUMBERS = {
    word: str(digit) for digit, word in enumerate("zero one two three four five six seven eight nine ten".split())
} | {"none": "0"}
_ARTICLES = {"a", "an", "the"}
# The contractions whose spellings with an apostrophe left out the official evaluation restores, by ending. Like
# its table, this one leaves alone the real words "its", "id", "ill", "well", "were", "wed", "hell", "shell", "shed",
# "lets" (and "shes"), but does read "cant", "wont", "hes", "hed" as contractions; and it has no "i" (the official
# entries are spelled "Im", "Ive", which never match the lower-cased text, so "im" stays "im" there).
_CONTRACTION_STEMS = {
    "n't": "ai are ca could did does do had has have is might must need ought sha should was were wo would",
    "n't've": "could had might should would",
    "'ve": "could might must not should would we they you who what where",
    "'d": "he how it somebody someone something there they who where you",
    "'d've": "he it she somebody someone something there they we who you y'all",
    "'ll": "how it somebody someone something they what who why you y'all",
    "'re": "there they what why you",
    "'s": "he how somebody someone that there what when where who why",
}
_CONTRACTIONS = [stem + ending for ending, stems in _CONTRACTION_STEMS.items() for stem in stems.split()]
_CONTRACTIONS += ["ma'am", "o'clock", "'twas", "y'all", "'ow's'at"]
# Each spelling with one apostrophe left out -> the contraction ("dont" -> "don't", "couldnt've" -> "couldn't've").
_RESTORED_APOSTROPHES = {
    contraction[:i] + contraction[i + 1 :]: contraction
    for contraction in _CONTRACTIONS
    for i, char in enumerate(contraction)
    if char == "'"
}


def _strip_vqa_punctuation(text: str) -> str:
    """The official punctuation step: each mark is deleted where it touches a space somewhere in the text (or
    anywhere when the text holds a digit,digit comma, so "1,000" -> "1000") and is a space otherwise, so that
    "black-and-white" -> "black and white" but "e - mail" -> "e mail"; then periods go unless a digit follows."""
    delete = _DIGIT_COMMA_DIGIT.search(text) is not None
    stripped = text
    for mark in _VQA_PUNCTUATION:
        # the official script decides on the text it was given, not on the text as the loop left it
        touches_space = f"{mark} " in text or f" {mark}" in text
        stripped = stripped.replace(mark, "" if delete or touches_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", stripped)


def vqa_normalize(answer: str) -> str:
    """The answer normalization of the official VQA evaluation, so that scores compare with published ones:
    newlines and tabs as spaces, stripped; its punctuation step (`_strip_vqa_punctuation`: "washington d.c." ->
    "washington dc", while "5%", "$5", "2:50" and "don't" keep their marks); lower case; number words zero to
    ten (and "none") as digits; articles dropped; missing apostrophes restored ("dont" -> "don't").

    The official script normalizes the human answers less than the prediction (only their punctuation, and
    only when the humans disagree; its 2021 revision normalizes neither when they all agree, so that "Yes"
    fails against ten "yes"). VQAv2's stored answers are already in normalized form, so `vqa_accuracy`
    normalizes both alike: the same scores there, and no penalty where another dataset's answers are not.
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    words = [_NUMBERS.get(word, word) for word in _strip_vqa_punctuation(text).lower().split()]
    return " ".join(_RESTORED_APOSTROPHES.get(word, word) for word in words if word not in _ARTICLES)


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
    """Average Normalized Levenshtein Similarity of one answer (Biten et al. 2019, DocVQA) as the
    official DocVQA / InfographicVQA evaluation computes it, whose numbers the leaderboards publish:
    the best over the references of 1 - edit distance / longer length, where the texts compared are
    `normalize`d but the lengths are those of the texts as given, and a score below `threshold`
    counts as 0 (a wrong answer gets no partial credit; a score of exactly 0.5 is kept, where the
    paper's "distance < 0.5" would drop it).
    """
    answer = normalize(prediction)
    best_distance = 1.0
    for reference in answers:
        longer = max(len(prediction.upper()), len(reference.upper()))
        distance = float(edit_distance(answer, normalize(reference))) / longer if longer else 0.0
        best_distance = min(best_distance, distance)
    score = 1.0 - best_distance
    return score if score >= threshold else 0.0


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
    """Shared by CER and WER: one reference text per prediction, fed to the torchmetrics rate, which pools
    the samples (total edits / total reference units) and so counts an empty reference's prediction as
    insertions and adds no units.

    Where every reference seen is empty (blank crops, silence) the total is 0 and torchmetrics reports inf, or
    NaN when the predictions are empty too. The rate then takes 1 as its denominator instead, as jiwer 4 does:
    the number of units inserted, finite, 0 only when every prediction is empty, higher the more was made up.
    A count of samples tells that case from a metric without samples, which stays NaN.
    """

    key: str
    errors: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("samples", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        # torchmetrics counts in float32, whose whole numbers end at 2**24: past 16.8M reference
        # characters (an OCR validation set of ~10k pages) a page's few edits no longer added up.
        self.add_state("errors", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[Prediction], references: Sequence[str | Annotation]) -> None:
        """Add one batch; `references[i]` is the text `predictions[i]` transcribes."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        super().update([text_of(p) for p in predictions], [text_of(r) for r in references])
        self.samples += len(predictions)

    def compute(self) -> dict[str, float]:
        """The rate over every sample seen (NaN before any)."""
        if not self.samples:
            return {self.key: float("nan")}
        return {self.key: float(self.errors / self.total.clamp(min=1))}


class CER(_TranscriptionRate, CharErrorRate):
    """Character error rate (torchmetrics: total edits / total reference characters; lower is better)
    of transcriptions against one reference text each. Case and spacing count: they are OCR errors.
    An empty reference adds its prediction's characters as edits; see `_TranscriptionRate` for a corpus of
    empty references only."""

    key = "cer"


class WER(_TranscriptionRate, WordErrorRate):
    """Word error rate (torchmetrics: total word edits / total reference words, words split at
    whitespace; lower is better) of transcriptions against one reference text each. Empty references
    count as in `CER`."""

    key = "wer"
