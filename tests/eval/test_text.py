"""VQA accuracy, exact match, ANLS, CER and WER on handmade examples; the `build_metric` registry."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from f2tune.eval.metrics import _METRICS, build_metric, exact_match, normalize
from f2tune.eval.metrics.text import ANLS, CER, WER, ExactMatch, VQAAccuracy, anls, vqa_accuracy, vqa_normalize


def humans(matching: int, answer: str = "2", other: str = "3") -> list[str]:
    """Ten human answers, `matching` of them equal to `answer`."""
    return [answer] * matching + [other] * (10 - matching)


@pytest.mark.parametrize(
    ("matching", "expected"),
    [(10, 1.0), (4, 1.0), (3, 0.9), (2, 0.6), (1, 0.3), (0, 0.0)],
)
def test_vqa_accuracy_averages_over_leave_one_out_subsets(matching: int, expected: float) -> None:
    # with k matching humans: k subsets hold k - 1 of them, 10 - k hold k; each credits min(n / 3, 1)
    assert vqa_accuracy("2", humans(matching)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answer", "official"),
    [
        ("dont", "don't", 1.0),
        ("isnt", "isn't", 1.0),
        ("washington d.c.", "washington dc", 1.0),
        ("p.m.", "pm", 1.0),
        ("5%", "5", 0.0),
        ("$5", "5", 0.0),
        ("2:50", "2 50", 0.0),
    ],
)
def test_vqa_accuracy_scores_as_the_official_evaluation(prediction: str, answer: str, official: float) -> None:
    # an audit's cases, where the earlier simplified normalization scored differently from vqaEval.py
    assert vqa_accuracy(prediction, humans(10, answer)) == official


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [("5%", "5%"), ("$5", "$5"), ("2:50", "2:50"), ("#1", "#1"), ("a&b", "a&b"), ("3.5", "3.5"), (".5", ".5")],
)
def test_vqa_normalize_keeps_marks_outside_the_official_punctuation(answer: str, normalized: str) -> None:
    # "5%" is not "5", nor "2:50" "2 50": the official evaluation strips only its own set of marks
    assert vqa_normalize(answer) == normalized


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [("washington d.c.", "washington dc"), ("p.m.", "pm"), ("e.g. red", "eg red"), ("Yes.", "yes"), ("3.", "3")],
)
def test_vqa_normalize_deletes_periods_not_before_a_digit(answer: str, normalized: str) -> None:
    assert vqa_normalize(answer) == normalized


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("black-and-white", "black and white"),  # a mark between letters becomes a space
        ("(left)", "left"),
        ("Yes!", "yes"),
        ("left - right-hand", "left righthand"),  # "-" touches a space somewhere: every "-" is deleted
        ("1,000", "1000"),
        ("1,000-2,000", "10002000"),  # a digit,digit comma: every mark is deleted, as the official script does
    ],
)
def test_vqa_normalize_deletes_punctuation_touching_a_space_or_in_numbers(answer: str, normalized: str) -> None:
    assert vqa_normalize(answer) == normalized


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [("The Two dogs.", "2 dogs"), ("an apple", "apple"), ("none", "0"), ("TEN", "10"), ("eleven", "eleven")],
)
def test_vqa_normalize_writes_numbers_as_digits_and_drops_articles(answer: str, normalized: str) -> None:
    assert vqa_normalize(answer) == normalized


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("dont", "don't"),
        ("don't", "don't"),
        ("Isnt it", "isn't it"),
        ("youre", "you're"),
        ("whats", "what's"),
        ("cant", "can't"),
        ("oclock", "o'clock"),
        ("couldnt've", "couldn't've"),
        ("couldn'tve", "couldn't've"),
        ("yall", "y'all"),
    ],
)
def test_vqa_normalize_restores_apostrophes_of_contractions(answer: str, normalized: str) -> None:
    assert vqa_normalize(answer) == normalized


@pytest.mark.parametrize("word", ["its", "well", "were", "ill", "id", "shell", "hell", "wed", "im", "i'm"])
def test_vqa_normalize_leaves_words_the_official_table_leaves(word: str) -> None:
    # real words stay words; "im" stays too, as the official table's "Im" never matches lower-cased text
    assert vqa_normalize(word) == word


def test_vqa_normalize_turns_newlines_and_tabs_into_spaces() -> None:
    assert vqa_normalize("\tyes\nsir ") == "yes sir"


def test_vqa_accuracy_normalizes_predictions_and_human_answers_alike() -> None:
    assert vqa_accuracy("Two", humans(4)) == 1.0
    assert vqa_accuracy("black and white", humans(10, "Black-and-white")) == 1.0
    assert vqa_accuracy("yes", ["Yes."]) == 1.0  # one reference: exact match after normalization


def test_vqa_metric_on_annotations() -> None:
    metric = build_metric("vqa_accuracy")
    metric.update(["2", {"text": "two"}], [{"answers": humans(1)}, humans(3)])
    assert metric.compute() == {"vqa_accuracy": pytest.approx((0.3 + 0.9) / 2)}


def test_exact_match_takes_any_reference() -> None:
    metric = ExactMatch()
    metric.update(["A  Cat", "dog", "cow"], ["a cat", ["bird", "Dog"], {"text": "horse"}])
    assert metric.compute() == {"exact_match": pytest.approx(2 / 3)}


def test_anls_examples() -> None:
    """As the official DocVQA evaluation scores them (the paper's "distance < 0.5" gave 0 at 0.5)."""
    assert anls("Hello  World", ["hello world"]) == 1.0  # case and spacing are normalized
    assert anls("hello wrld", ["hello world"]) == pytest.approx(1 - 1 / 11)
    assert anls("abxy", ["abcd"]) == 0.5  # a score of exactly 0.5 is kept
    assert anls("wxyz", ["abcd"]) == 0.0
    assert anls("abcy", ["abcd"]) == pytest.approx(0.75)
    assert anls("0.25", ["$0.25", "25 cents"]) == pytest.approx(1 - 1 / 5)  # the best reference
    assert anls("abc", ["abcd  "]) == pytest.approx(1 - 1 / 6)  # lengths of the texts as given
    assert anls("anything", ["something else"]) == 0.0
    assert anls("anything", ["something else"], threshold=0.0) == pytest.approx(1 - 9 / 14)  # no threshold
    metric = ANLS()
    metric.update(["hello wrld", "abxy"], [{"answers": ["hello world"]}, "abcd"])
    assert metric.compute() == {"anls": pytest.approx((1 - 1 / 11 + 0.5) / 2)}


def test_cer_and_wer_simple_cases() -> None:
    cer = build_metric("cer")
    cer.update(["abce", "xyz"], ["abcd", {"text": "xyz"}])
    assert cer.compute() == {"cer": pytest.approx(1 / 7)}  # edits over reference characters, pooled
    wer = WER()
    wer.update(["the cat sit", "on mat"], ["the cat sat", "on the mat"])
    assert wer.compute() == {"wer": pytest.approx(2 / 6)}
    assert isinstance(cer, CER)


@pytest.mark.parametrize(
    ("predictions", "references", "expected"),
    [
        (["ab", "xyz"], ["", "xy"], 3 / 2),  # 2 + 1 edits over 2 reference characters, as torchmetrics pools them
        ([""], [""], 0.0),  # torchmetrics: 0 / 0 reference characters, NaN
        (["", ""], ["", ""], 0.0),
        (["ab"], [""], 2.0),  # torchmetrics: inf; jiwer 4 counts the insertions
        (["ab", "c"], ["", ""], 3.0),
    ],
)
def test_cer_and_wer_count_what_is_said_for_an_empty_reference_as_insertions(
    predictions: list[str], references: list[str], expected: float
) -> None:
    cer = CER()
    cer.update(predictions, references)
    assert cer.compute() == {"cer": pytest.approx(expected)}
    wer = WER()  # the same texts with each character a word
    wer.update([" ".join(p) for p in predictions], [" ".join(r) for r in references])
    assert wer.compute() == {"wer": pytest.approx(expected)}


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@pytest.mark.parametrize("metric", [CER, WER])
def test_cer_and_wer_keep_counting_past_float32_whole_numbers(metric) -> None:
    """After 2**24 reference units (an OCR validation set of some 10k pages), one more error and
    one more unit still count."""
    rate = metric()
    rate.update(["a"], ["a"])
    rate.errors += 2**24
    rate.total += 2**24
    rate.update(["b"], ["c"])  # one substitution, one unit
    assert rate.errors.item() == 2**24 + 1 and rate.total.item() == 2**24 + 2


def test_cer_and_wer_before_any_sample_are_nan() -> None:
    assert math.isnan(CER().compute()["cer"]) and math.isnan(WER().compute()["wer"])


def test_mismatched_batch_lengths_raise() -> None:
    with pytest.raises(ValueError):
        VQAAccuracy().update(["a", "b"], [["a"]])
    with pytest.raises(ValueError):
        CER().update(["a"], [])


def test_mean_metrics_merge_like_ddp() -> None:
    first, second = ANLS(), ANLS()
    first.update(["hello wrld"], ["hello world"])
    second.update(["wxyz", "abcd"], ["abcd", "abcd"])
    first.merge_state(second)
    assert first.compute()["anls"] == pytest.approx((1 - 1 / 11 + 0 + 1) / 3)


def test_build_metric_names_and_errors() -> None:
    names = ["coco_map", "grounding_acc", "grounding_acc_merged", "miou", "cider", "bleu4", "rougeL"]
    names += ["vqa_accuracy", "exact_match", "anls", "cer", "wer"]
    if importlib.util.find_spec("torchvision") is None:  # torchmetrics' MeanAveragePrecision needs it
        names.remove("coco_map")
    for name in names:
        before_any_sample = build_metric(name).compute()  # "not measured": NaN, or COCO's -1 (bleu4 said 0)
        assert all(math.isnan(v) or (name == "coco_map" and v == -1) for v in before_any_sample.values()), name
    with pytest.raises(ValueError, match="known metrics: coco_map, grounding_acc"):
        build_metric("bleu")


def test_legacy_scorers_keep_their_api() -> None:
    assert normalize("  A  B ") == "a b"
    assert exact_match("A cat", "a  cat") == 1.0


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch.distributed as dist
import torch.multiprocessing as mp
from f2tune.eval.metrics import build_metric

def run(rank, out, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    results = {}
    for name, samples in json.loads((out / "cases.json").read_text()).items():
        for split in (1, len(samples)):  # rank 1 gets most samples, then none
            mine = samples[:split] if rank == 0 else samples[split:]
            metric = build_metric(name)
            for start in range(0, len(mine), 2):
                metric.update(*map(list, zip(*mine[start : start + 2])))
            results[f"{name}/{split}"] = metric.compute()
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=(Path(sys.argv[1]), sys.argv[2]), nprocs=2)
"""
BOXES = [[0, 0, 10, 10], [20, 20, 40, 40], [5, 5, 30, 30]]
DDP_CASES: dict[str, list[list[Any]]] = {
    "coco_map": [
        [
            {"boxes": [BOXES[0], BOXES[2]], "labels": ["cat", "dog"], "scores": [0.4, 0.9]},
            {"boxes": BOXES[:2], "labels": ["cat"] * 2},
        ],
        [{"boxes": [], "labels": []}, {"boxes": [BOXES[2]], "labels": ["dog"]}],
        [{"boxes": [BOXES[1]], "labels": ["dog"], "scores": [0.7]}, {"boxes": [BOXES[1]], "labels": ["dog"]}],
    ],
    "grounding_acc": [[{"boxes": [b]}, {"boxes": [BOXES[0]]}] for b in BOXES],
    "grounding_acc_merged": [
        [{"boxes": [BOXES[0], b], "labels": ["two", "two"]}, {"boxes": BOXES[:2], "labels": ["two", "two"]}]
        for b in BOXES
    ],
    "miou": [
        [{"polygons": [[0, 0, s, 0, 0, s]]}, {"polygons": [[0, 0, 10, 0, 10, 10, 0, 10]]}, [16, 12]]
        for s in (5, 10, 14)
    ],
    "cider": [
        [c, ["a dog runs on grass", "a brown dog running"]] for c in ("a dog runs", "a cat sleeps", "a dog on grass")
    ],
    "bleu4": [[c, ["a dog runs on the green grass"]] for c in ("a dog runs on the grass", "a dog", "the green grass")],
    "rougeL": [[c, ["a dog runs on grass"]] for c in ("a dog runs", "grass", "a dog runs on grass")],
    "vqa_accuracy": [[a, humans(k)] for a, k in (("2", 1), ("two", 3), ("3", 4))],
    "exact_match": [[a, "yes"] for a in ("yes", "no", "Yes")],
    "anls": [[a, ["hello world"]] for a in ("hello wrld", "bye", "hello world")],
    "cer": [[a, "abcd"] for a in ("abce", "abcd", "xbcdef")],
    "wer": [[a, "the cat sat"] for a in ("the cat sit", "the cat", "a dog sat down")],
}


@pytest.mark.slow
def test_every_metric_syncs_across_processes(tmp_path: Path) -> None:
    """Two gloo processes, with uneven shares and with one process left without samples, report the
    single-process value (torchmetrics' own ROUGE and mAP states fail at both)."""
    assert set(DDP_CASES) == set(_METRICS), "every metric needs a case here"
    has_torchvision = importlib.util.find_spec("torchvision") is not None  # MeanAveragePrecision needs it
    cases = {name: samples for name, samples in DDP_CASES.items() if has_torchvision or name != "coco_map"}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "ddp.py"), str(tmp_path), port],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name, samples in cases.items():
        metric = build_metric(name)
        metric.update(*map(list, zip(*samples)))
        expected = metric.compute()
        for rank in (0, 1):
            results = json.loads((tmp_path / f"rank{rank}.json").read_text())
            for split in (1, len(samples)):
                assert results[f"{name}/{split}"] == pytest.approx(expected, abs=1e-6), (name, split, rank)
