"""The evaluator: per-task generation settings, parsing, scores and metrics, per-task sample caps."""

from __future__ import annotations

import re
import warnings

import pytest
from PIL import Image

from f2tune.config import EvalConfig
from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.data.sample import Sample
from f2tune.errors import RecipeError
from f2tune.eval import evaluator as evaluator_module
from f2tune.eval.evaluator import Decoding, Evaluator, check_metric_fits
from f2tune.eval.generate import Generation
from f2tune.tasks import TASKS

OD = {"boxes": [[10.0, 20.0, 110.0, 70.0], [120.0, 10.0, 190.0, 90.0]], "labels": ["cat", "dog"]}


def mixed_batch(tmp_path, processor, tasks: tuple[str, ...] = ("<OD>", "<CAPTION>")) -> dict:
    image = tmp_path / "scene.png"
    Image.new("RGB", (200, 100)).save(image)
    samples = [
        Sample("od-1", image, "", "", "x:1", task="<OD>", reference=OD),
        Sample("cap-1", image, "<CAPTION>", "a cat and a dog", "x:2", task="<CAPTION>"),
        Sample("od-2", image, "", "", "x:3", task="<OD>", reference=OD),
        Sample("cap-2", image, "<CAPTION>", "three green squares on a table", "x:4", task="<CAPTION>"),
    ]
    dataset = SampleDataset([s for s in samples if s.task in tasks])
    return Florence2Collator(processor, 64)([dataset[i] for i in range(len(dataset))])


def test_perfect_answers_score_perfectly_and_records_are_complete(tmp_path, processor, tiny_model, monkeypatch):
    batch = mixed_batch(tmp_path, processor)
    calls = []

    def answer_with_targets(model, proc, sub, decoding, with_probabilities, synced):
        rows = [i for i, task in enumerate(batch["tasks"]) if Decoding.of(TASKS[task], EvalConfig()) == decoding]
        calls.append((decoding, with_probabilities))
        return [Generation(batch["targets"][r], [], [] if with_probabilities else None) for r in rows]

    monkeypatch.setattr(evaluator_module, "generate", answer_with_targets)
    evaluator = Evaluator({"<OD>", "<CAPTION>"}, EvalConfig(metric="auto"), processor)
    records = evaluator.update(tiny_model, batch)
    results = evaluator.compute()
    assert results["OD/map"] == pytest.approx(1.0) and results["CAPTION/cider"] > 0
    assert results["CAPTION/bleu4"] == pytest.approx(1.0) and results["CAPTION/rougeL"] == pytest.approx(1.0)
    assert {r["id"] for r in records} == {"od-1", "od-2", "cap-1", "cap-2"}
    od = next(r for r in records if r["id"] == "od-1")
    assert od["prediction"]["labels"] == ["cat", "dog"] and len(od["prediction"]["scores"]) == 2
    # boxes (OD) get token probabilities for their scores; captions skip that decoder pass
    assert sorted((c.no_repeat_ngram_size, scored) for c, scored in calls) == [(0, True), (3, False)]


def test_a_process_without_samples_of_a_task_joins_its_metric_without_a_warning(
    tmp_path, processor, tiny_model, monkeypatch
):
    """Under DDP every process computes every task's metric (the states are synced); torchmetrics
    warned that `compute` came "before the update" on a rank 0 that had no `<OD>` sample of its own."""
    only_captions = mixed_batch(tmp_path, processor, tasks=("<CAPTION>",))
    monkeypatch.setattr(evaluator_module, "generate", lambda *a, **k: [Generation("a cat", [], None)] * 2)
    monkeypatch.setattr(evaluator_module, "_distributed", lambda: True)
    evaluator = Evaluator({"<OD>", "<CAPTION>"}, EvalConfig(metric="auto"), processor)
    evaluator.update(tiny_model, only_captions)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        results = evaluator.compute()
    assert not [str(w.message) for w in said]
    assert results["OD/map"] == -1 and results["CAPTION/bleu4"] >= 0  # -1: COCO's "no images"


def test_tasks_with_the_same_decoding_share_one_generate_call(tmp_path, processor, tiny_model, monkeypatch):
    """`<OD>` and `<OCR>` both decode with 512 tokens, 3 beams and no n-gram block: one call for
    their rows, with token probabilities (OD's boxes need them); captions get their own call."""
    batch = mixed_batch(tmp_path, processor)
    batch["tasks"][1] = "<OCR>"  # cap-1
    calls = []

    def record(model, proc, sub, decoding, with_probabilities, synced):
        calls.append((len(sub["input_ids"]), decoding.no_repeat_ngram_size, with_probabilities))
        return [Generation("text", [], [] if with_probabilities else None) for _ in range(len(sub["input_ids"]))]

    monkeypatch.setattr(evaluator_module, "generate", record)
    evaluator = Evaluator({"<OD>", "<OCR>", "<CAPTION>"}, EvalConfig(), processor)
    records = evaluator.update(tiny_model, batch)
    assert sorted(calls) == [(1, 3, False), (3, 0, True)]
    assert sorted(r["task"] for r in records) == ["<CAPTION>", "<OCR>", "<OD>", "<OD>"]
    assert next(r for r in records if r["id"] == "cap-1")["prediction"] == {"text": "text"}


def test_each_task_is_capped_at_max_samples(tmp_path, processor, tiny_model):
    batch = mixed_batch(tmp_path, processor)
    evaluator = Evaluator({"<OD>", "<CAPTION>"}, EvalConfig(max_samples=1, max_new_tokens=4), processor)
    records = evaluator.update(tiny_model.eval(), batch)
    assert sorted(r["task"] for r in records) == ["<CAPTION>", "<OD>"]
    assert evaluator.update(tiny_model, batch) == []  # both quotas used up
    assert set(evaluator.compute()) >= {"OD/map", "CAPTION/cider"}
    evaluator.reset()
    assert len(evaluator.update(tiny_model, batch)) == 2


def test_recipe_overrides_task_decoding():
    spec = TASKS["<OD>"]
    assert Decoding.of(spec, EvalConfig()) == Decoding(spec.max_new_tokens, spec.num_beams, 0)
    assert Decoding.of(spec, EvalConfig(max_new_tokens=7, num_beams=1, no_repeat_ngram_size=2)) == Decoding(7, 1, 2)


def test_a_single_metric_for_every_task(processor):
    evaluator = Evaluator({"<OD>", ""}, EvalConfig(metric="exact_match"), processor)
    assert evaluator.metric_names == {"<OD>": ["exact_match"], "": ["exact_match"]}
    assert set(evaluator.metrics) == {"OD-exact_match", "custom-exact_match"}


def test_auto_adds_the_companion_metrics_of_each_task(processor):
    tasks = {"<CAPTION>", "", "<OCR>", "<OD>", "<CAPTION_TO_PHRASE_GROUNDING>"}
    evaluator = Evaluator(tasks, EvalConfig(metric="auto"), processor)
    assert evaluator.metric_names == {
        "<CAPTION>": ["cider", "bleu4", "rougeL"],
        "": ["vqa_accuracy", "exact_match", "anls"],
        "<OCR>": ["cer", "wer"],
        "<OD>": ["coco_map"],
        "<CAPTION_TO_PHRASE_GROUNDING>": ["grounding_acc", "grounding_acc_merged"],
    }
    assert Evaluator({"<OD>"}, EvalConfig(metric="none"), processor).metric_names == {"<OD>": []}


def test_box_metrics_are_told_how_each_task_answers(processor):
    """Grounded captions match phrases by name; one-expression tasks take the first box; proposals
    are scored class-agnostic whatever labels their references carry."""
    grounding = Evaluator(
        {"<CAPTION_TO_PHRASE_GROUNDING>", "<OPEN_VOCABULARY_DETECTION>"}, EvalConfig(metric="grounding_acc"), processor
    )
    assert grounding.metrics["CAPTION_TO_PHRASE_GROUNDING-grounding_acc"].by_name
    assert not grounding.metrics["OPEN_VOCABULARY_DETECTION-grounding_acc"].by_name
    detection = Evaluator({"<REGION_PROPOSAL>", "<OD>"}, EvalConfig(metric="auto"), processor)
    assert detection.metrics["REGION_PROPOSAL-coco_map"].class_agnostic
    assert not detection.metrics["OD-coco_map"].class_agnostic


@pytest.mark.parametrize(
    ("task", "metric", "refused"),
    [
        ("<CAPTION>", "coco_map", "eval.metric is coco_map, which compares boxes, but <CAPTION> does not answer"),
        ("<OD>", "miou", "eval.metric is miou, which compares masks, but <OD> does not answer with masks"),
        ("", "grounding_acc", "but free-text prompt does not answer with boxes"),
        ("<OD>", "coco_map", None),
        ("<REFERRING_EXPRESSION_SEGMENTATION>", "miou", None),
        ("<OD>", "exact_match", None),  # text metrics compare a structured answer's labels
        ("<CAPTION>", "auto", None),
    ],
)
def test_a_metric_that_cannot_score_a_task_is_refused(task, metric, refused):
    """coco_map on captions ran, logged n/a (-1) at every validation, and a monitor on it picked a
    "best" checkpoint among them."""
    if refused is None:
        check_metric_fits({task}, EvalConfig(metric=metric))
    else:
        with pytest.raises(RecipeError, match=re.escape(refused)):
            check_metric_fits({task}, EvalConfig(metric=metric))


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_true_half_precision_leaves_metric_states_in_their_dtype(processor, precision):
    """Lightning's `bf16-true` converts the LightningModule, the evaluator inside it, with
    `.to(dtype=...)`: a bfloat16 count stopped at 256, so exact match over 1000 samples, a quarter
    right, read 0.977."""
    from lightning.pytorch.plugins.precision import HalfPrecision

    evaluator = Evaluator(TASKS, EvalConfig(metric="auto"), processor)
    before = _state_dtypes(evaluator)
    evaluator = HalfPrecision(precision).convert_module(evaluator)
    assert _state_dtypes(evaluator) == before
    exact = evaluator.metrics["REGION_TO_CATEGORY-exact_match"]
    for i in range(1000):
        exact.update(["cat" if i % 4 == 0 else "dog"], ["cat"])
    assert exact.compute()["exact_match"] == 0.25


def test_metric_states_go_where_the_model_goes(processor):
    evaluator = Evaluator(["<CAPTION>"], EvalConfig(metric="auto"), processor).to("meta")
    assert {state.device.type for metric in evaluator.metrics.values() for _, state in _states(metric)} == {"meta"}


def _state_dtypes(evaluator: Evaluator) -> dict:
    return {(name, key): state.dtype for name, metric in evaluator.metrics.items() for key, state in _states(metric)}


def _states(metric) -> list:
    """A metric's tensor states, each list state's items one by one."""
    values = [(key, getattr(metric, key)) for key in metric._defaults]
    return [(key, t) for key, value in values for t in (value if isinstance(value, list) else [value])]
