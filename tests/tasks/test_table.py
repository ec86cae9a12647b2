"""The task table: settings per task, prompts and targets the processor accepts, parsers that agree
with `Florence2Processor.post_process_generation` on well-formed text and never fail on the rest."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import annotation

from f2tune.errors import DataError
from f2tune.locs import NUM_BINS
from f2tune.tasks import (
    CUSTOM,
    TASKS,
    TASKS_WITH_INPUT,
    TASKS_WITHOUT_INPUT,
    TaskSpec,
    build_prompt,
    format_target,
    parse_output,
    task_of,
)

SIZE = (640, 427)
METRICS = {
    "cider": {"<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<REGION_TO_DESCRIPTION>"},
    "coco_map": {"<OD>", "<DENSE_REGION_CAPTION>", "<OPEN_VOCABULARY_DETECTION>", "<REGION_PROPOSAL>"},
    "grounding_acc": {"<CAPTION_TO_PHRASE_GROUNDING>"},
    "miou": {"<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>"},
    "cer": {"<OCR>", "<OCR_WITH_REGION>", "<REGION_TO_OCR>"},
    "exact_match": {"<REGION_TO_CATEGORY>"},
    "vqa_accuracy": {""},
}
EVERY_FIELD = {
    "query": "a red car",
    "region": [64, 0, 128, 42.7],
    "text": "a red car",
    "boxes": [[64, 0, 128, 42.7]],
    "labels": ["car"],
    "polygons": [[0, 0, 64, 0, 64, 42.7]],
    "quads": [[0, 0, 64, 0, 64, 42.7, 0, 42.7]],
}
"""Enough for every task's prompt and target (each reads only its own fields)."""
SIZES = st.tuples(st.integers(1, 2000), st.integers(1, 2000))


def processor_view(spec: TaskSpec, answer: object) -> dict:
    """`post_process_generation`'s answer in our field names (pixel ints, as it gives them)."""
    kind = spec.post_processing
    if kind == "pure_text":
        text = re.sub(r"<loc_\d+>", "", answer).strip() if spec.input == "region" else answer
        return {"text": text}
    if kind == "ocr":
        return {"quads": answer["quad_boxes"], "labels": answer["labels"]}
    if kind == "polygons":
        return {"polygons": [part for instance in answer["polygons"] for part in instance]}
    if kind == "bboxes":
        return {"boxes": answer["bboxes"]}
    if kind == "description_with_bboxes_or_polygons":
        return {"boxes": answer["bboxes"], "labels": answer["bboxes_labels"]}
    return {"boxes": answer["bboxes"], "labels": answer["labels"]}


def shapes_of(ann: dict) -> list[list[float]]:
    return [shape for key in ("boxes", "polygons", "quads") for shape in ann.get(key, [])]


def test_table_matches_the_processor(processor):
    assert set(TASKS) == set(TASKS_WITHOUT_INPUT) | set(TASKS_WITH_INPUT) | {""}
    for token, spec in TASKS.items():
        assert spec.token == token
        assert spec.post_processing == processor.tasks_answer_post_processing_type.get(token, "pure_text")
        assert spec.input == ("none" if token in TASKS_WITHOUT_INPUT else "region" if "REGION_TO" in token else "query")


def test_metric_per_task():
    assert {token: spec.metric for token, spec in TASKS.items()} == {
        token: metric for metric, tokens in METRICS.items() for token in tokens
    }


@pytest.mark.parametrize("token", list(TASKS))
def test_no_repeat_ngrams_only_where_the_answer_has_no_locations(token):
    spec = TASKS[token]
    target = format_target(token, EVERY_FIELD, SIZE)
    if "<loc_" in target:
        assert spec.no_repeat_ngram_size == 0
    assert spec.generation_kwargs() == {
        "max_new_tokens": spec.max_new_tokens,
        "num_beams": spec.num_beams,
        "no_repeat_ngram_size": spec.no_repeat_ngram_size,
    }
    assert 0 < spec.max_new_tokens <= 1024


@pytest.mark.parametrize("token", list(TASKS))
def test_tasks_with_boxes_are_those_whose_answers_parse_to_boxes(token):
    """The evaluator computes token probabilities only for these tasks, so a task whose parser
    yields boxes without the flag would lose its box scores (and its mAP ranking)."""
    target = format_target(token, EVERY_FIELD, SIZE)
    assert TASKS[token].answers_with_boxes == bool(parse_output(token, target, SIZE).get("boxes"))


def test_task_of():
    assert task_of("<OD>") is TASKS["<OD>"]
    assert task_of(" <CAPTION_TO_PHRASE_GROUNDING>a dog and a cat") is TASKS["<CAPTION_TO_PHRASE_GROUNDING>"]
    assert task_of("<REGION_TO_CATEGORY><loc_1><loc_2><loc_3><loc_4>").token == "<REGION_TO_CATEGORY>"
    assert task_of("What colour is the car?") is CUSTOM is TASKS[""]
    with pytest.raises(DataError, match="unknown task token <CAPTON>"):
        task_of("<CAPTON>")
    with pytest.raises(DataError, match="takes no input"):
        task_of("<OD> cats")


@pytest.mark.parametrize("token", list(TASKS))
def test_prompts_are_what_the_processor_expands(processor, token):
    spec = TASKS[token]
    prompt = build_prompt(token, {**EVERY_FIELD, "region": [0, 0, 640, 427]}, SIZE)
    assert task_of(prompt) is spec
    (sentence,) = processor._construct_prompts(prompt)
    if spec.input == "region":
        assert prompt == token + "<loc_0><loc_0><loc_999><loc_999>"
        assert "<loc_0><loc_0><loc_999><loc_999>" in sentence
    elif spec.input == "query":
        assert prompt == token + "a red car" and "a red car" in sentence
    if token:
        assert token not in sentence


@pytest.mark.parametrize(
    ("task", "ann", "message"),
    [
        ("<OD>", {"boxes": [[10, 0, 5, 5]], "labels": ["cat"]}, "x2 < x1"),
        ("<OD>", {"boxes": [[0, 0, 5, 5]]}, "needs the annotation field 'labels'"),
        ("<OD>", {"boxes": [[0, 0, 5, 5]], "labels": ["a", "b"]}, "1 boxes but 2 labels"),
        ("<OD>", {"boxes": [[0, 0, 5, 5]], "labels": [" "]}, "non-empty"),
        ("<OD>", {"boxes": [[0, 0, 5, 5]], "labels": ["a<b"]}, "contains '<'"),
        ("<OD>", {"boxes": [[0, 0, "x", 5]], "labels": ["a"]}, "only numbers"),
        ("<OD>", {"boxes": 3, "labels": ["a"]}, "must be a list"),
        ("<REGION_PROPOSAL>", {"boxes": [[0, 0, 5]]}, "4 numbers"),
        ("<REGION_TO_SEGMENTATION>", {"polygons": [[0, 0, 5, 5]]}, "at least 3 points"),
        ("<REFERRING_EXPRESSION_SEGMENTATION>", {"polygons": []}, "at least one polygon"),
        ("<OCR_WITH_REGION>", {"quads": [[0] * 7], "labels": ["a"]}, "8 numbers"),
        ("<OCR_WITH_REGION>", {"quads": [[0] * 8], "labels": ["a<loc_1>"]}, "contains '<loc_'"),
        ("<CAPTION>", {}, "<CAPTION> needs the annotation field 'text'"),
        ("<REGION_TO_CATEGORY>", {"text": "car"}, "needs the annotation field 'region'"),
        ("<CAPTIONS>", {"text": "a"}, "unknown task '<CAPTIONS>'"),
    ],
)
def test_bad_annotations_are_data_errors(task, ann, message):
    with pytest.raises(DataError, match=re.escape(message)):
        format_target(task, ann, SIZE)


def test_bad_prompt_inputs_are_data_errors():
    with pytest.raises(DataError, match="'query'"):
        build_prompt("<OPEN_VOCABULARY_DETECTION>", {}, SIZE)
    with pytest.raises(DataError, match="x2 < x1"):
        build_prompt("<REGION_TO_OCR>", {"region": [5, 5, 0, 0]}, SIZE)
    with pytest.raises(DataError, match="starts with a task token"):
        build_prompt("", {"query": "<OD>"}, SIZE)
    with pytest.raises(DataError, match="a prompt takes one task token"):
        build_prompt("<OPEN_VOCABULARY_DETECTION>", {"query": "a cat <OD>"}, SIZE)
    with pytest.raises(DataError, match="task token <OD> must open the prompt"):
        build_prompt("", {"query": "what is <OD> here"}, SIZE)


def test_targets_in_florence2s_own_format():
    ann = {"boxes": [[0, 0, 640, 427], [64, 0, 128, 42.7], [1, 1, 2, 2]], "labels": ["wheel", "wheel", "car"]}
    assert format_target("<OD>", ann, SIZE) == (
        "wheel<loc_0><loc_0><loc_999><loc_999><loc_100><loc_0><loc_200><loc_100>car<loc_1><loc_2><loc_3><loc_4>"
    )
    assert format_target("<REGION_PROPOSAL>", ann, SIZE).startswith("<loc_0><loc_0><loc_999><loc_999><loc_100>")
    polygons = {"polygons": [[0, 0, 64, 0, 64, 42.7], [640, 427, 0, 427, 0, 0]]}
    assert format_target("<REGION_TO_SEGMENTATION>", polygons, SIZE) == (
        "<loc_0><loc_0><loc_100><loc_0><loc_100><loc_100><sep><loc_999><loc_999><loc_0><loc_999><loc_0><loc_0>"
    )
    region = {"text": "car", "region": [64, 0, 128, 42.7]}
    assert format_target("<REGION_TO_CATEGORY>", region, SIZE) == "car<loc_100><loc_0><loc_200><loc_100>"
    assert format_target("<REGION_TO_OCR>", region, SIZE) == "car"


@pytest.mark.parametrize("token", list(TASKS))
@settings(max_examples=40, deadline=None)
@given(size=SIZES, data=st.data())
def test_parse_output_agrees_with_the_processor(processor, token, size, data):
    spec = TASKS[token]
    ann = data.draw(annotation(spec, size))
    generated = f"</s><s>{format_target(spec, ann, size)}</s>"
    ours = parse_output(token, generated, size)
    theirs = processor_view(spec, processor.post_process_generation(generated, task=token, image_size=size)[token])
    assert ours.keys() == theirs.keys()
    assert ours.get("text") == theirs.get("text") and ours.get("labels") == theirs.get("labels")
    for mine, its in zip(shapes_of(ours), shapes_of(theirs), strict=True):
        assert all(math.floor(a - 1e-3) <= b <= math.floor(a + 1e-3) for a, b in zip(mine, its, strict=True))


@pytest.mark.parametrize("token", list(TASKS))
@settings(max_examples=40, deadline=None)
@given(size=SIZES, data=st.data())
def test_round_trip_within_half_a_bin(token, size, data):
    spec = TASKS[token]
    ann = data.draw(annotation(spec, size))
    parsed = parse_output(token, format_target(token, ann, size), size)
    if "text" in ann:
        assert parsed["text"] == ann["text"].strip()
    if "labels" in ann:
        assert parsed["labels"] == [label.strip() for label in ann["labels"]]
    original = shapes_of(ann)
    assert len(shapes_of(parsed)) == len(original)
    for shape, again in zip(original, shapes_of(parsed)):
        half_bin = [size[i % 2] / (2 * NUM_BINS) + 1e-9 for i in range(len(shape))]
        assert all(abs(a - b) <= h for a, b, h in zip(shape, again, half_bin))


FRAGMENTS = ["<loc_", "<loc_1>", "<loc_999>", "<loc_1000>", "<loc_123456>", "7", ">", "<", "<poly>", "</poly>", "<sep>"]
FRAGMENTS += ["cat", " ", "a red car", "<s>", "</s>", "<pad>", "\n", "é", "<OD>"]
GARBAGE = st.one_of(st.text(max_size=80), st.lists(st.sampled_from(FRAGMENTS), max_size=80).map("".join))
MALFORMED = [
    "",
    "cat<loc_1><loc_2",
    "cat<loc_1><loc_2><loc_3>",
    "<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6>",
    "<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6></poly></poly><sep><sep>",
    "<loc_5000><loc_5000><loc_5000><loc_5000><loc_5000><loc_5000><loc_5000><loc_5000>",
    "<loc_" + "9" * 5000 + ">" * 9,
    "</s><s><pad><pad>",
]


def assert_well_formed(parsed: dict, size: tuple[int, int]) -> None:
    """Right field types and lengths, coordinates inside the image: what metrics may rely on."""
    assert set(parsed) <= {"text", "boxes", "labels", "polygons", "quads"}
    assert isinstance(parsed.get("text", ""), str)
    for key, lengths in (("boxes", {4}), ("quads", {8})):
        assert all(len(shape) in lengths for shape in parsed.get(key, []))
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in parsed.get("polygons", []))
    if "labels" in parsed:
        assert len(parsed["labels"]) == len(parsed.get("boxes", parsed.get("quads")))
    for shape in shapes_of(parsed):
        assert all(0 <= v <= size[i % 2] for i, v in enumerate(shape))


@pytest.mark.parametrize("token", list(TASKS))
@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_generations_parse(token, text):
    assert_well_formed(parse_output(token, text, SIZE), SIZE)


@pytest.mark.parametrize("token", list(TASKS))
@settings(max_examples=100, deadline=None)
@given(size=SIZES, text=GARBAGE)
def test_any_text_parses(token, size, text):
    assert_well_formed(parse_output(token, text, size), size)


@pytest.mark.parametrize("token", list(TASKS))
@settings(max_examples=40, deadline=None)
@given(size=SIZES, data=st.data())
def test_truncated_generations_parse(token, size, data):
    target = format_target(token, data.draw(annotation(TASKS[token], size)), size)
    cut = target[: data.draw(st.integers(0, len(target)))]
    assert_well_formed(parse_output(token, cut, size), size)


def test_polygon_instances_and_bad_markup_match_the_processor(processor):
    task, size = "<REFERRING_EXPRESSION_SEGMENTATION>", (1000, 1000)
    triangle = "<loc_1><loc_2><loc_30><loc_4><loc_5><loc_60>"
    for text in (f"<poly>{triangle}</poly><poly>{triangle}<sep>{triangle}</poly>", f"{triangle}</poly>{triangle}"):
        theirs = processor.post_process_generation(text, task=task, image_size=size)[task]["polygons"]
        flat = [[math.floor(v) for v in part] for part in parse_output(task, text, size)["polygons"]]
        assert flat == [part for instance in theirs for part in instance]


def test_open_vocabulary_polygons_become_boxes(processor):
    task, size = "<OPEN_VOCABULARY_DETECTION>", (1000, 1000)
    text = "a cat<poly><loc_1><loc_2><loc_30><loc_4><loc_5><loc_60></poly>"
    theirs = processor.post_process_generation(text, task=task, image_size=size)[task]
    assert theirs["polygons_labels"] == ["a cat"] and theirs["bboxes"] == []
    assert parse_output(task, text, size) == {"boxes": [[1.5, 2.5, 30.5, 60.5]], "labels": ["a cat"]}


def test_where_we_differ_from_the_processor(processor):
    """Float bin centres, non-ASCII labels kept, `<pad>` and echoed regions removed from text answers."""
    size, box = (1000, 1000), "<loc_1><loc_2><loc_3><loc_4>"
    assert processor.post_process_generation(f"café{box}", task="<OD>", image_size=size)["<OD>"] == {
        "bboxes": [[1, 2, 3, 4]],
        "labels": ["caf"],
    }
    assert parse_output("<OD>", f"café{box}", size) == {"boxes": [[1.5, 2.5, 3.5, 4.5]], "labels": ["café"]}
    assert processor.post_process_generation("a cat</s><pad>", task="<CAPTION>")["<CAPTION>"] == "a cat<pad>"
    assert parse_output("<CAPTION>", "a cat</s><pad>", size) == {"text": "a cat"}
    assert parse_output("<REGION_TO_CATEGORY>", f"</s><s>car{box}</s>", size) == {"text": "car"}


# Without what we read differently on purpose: non-ASCII, bins > 999, and line breaks (the processor
# drops a box whose label has one before the locs).
ASCII_GARBAGE = st.lists(st.sampled_from([f for f in FRAGMENTS if f not in ("é", "<loc_1000>", "<loc_123456>", "\n")]))


def read_as_we_do(view: dict) -> dict:
    """The processor's answer with what we read differently on purpose in garbled text: box corners
    in order, labels without the end of a location or polygon token a phrase match started inside."""
    boxes = [[min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)] for x1, y1, x2, y2 in view.get("boxes", [])]
    labels = [re.sub(r"^(?:/?(?:loc_\d+|poly|sep)>)+", "", label).strip() for label in view.get("labels", [])]
    return view | ({"boxes": boxes} if "boxes" in view else {}) | ({"labels": labels} if "labels" in view else {})


def test_garbled_boxes_are_upright_and_labels_free_of_token_ends(processor):
    size = (1000, 1000)
    text = "car<loc_1><loc_2><loc_3>dog<loc_900><loc_500><loc_500><loc_900>"
    theirs = processor.post_process_generation(text, task="<OD>", image_size=size)["<OD>"]
    assert theirs == {"bboxes": [[900, 500, 500, 900]], "labels": ["loc_3>dog"]}
    assert parse_output("<OD>", text, size) == {"boxes": [[500.5, 500.5, 900.5, 900.5]], "labels": ["dog"]}


@pytest.mark.parametrize("token", ["<OD>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REGION_PROPOSAL>", "<OCR_WITH_REGION>"])
@settings(max_examples=200, deadline=None)
@given(text=ASCII_GARBAGE.map("".join))
def test_garbled_boxes_and_lines_parse_like_the_processor(processor, token, text):
    """Beyond well-formed text: the same runs are found in garbage (our patterns only skip hopeless starts)."""
    spec, size = TASKS[token], (1000, 1000)
    answer = processor.post_process_generation(text, task=token, image_size=size)[token]
    theirs = read_as_we_do(processor_view(spec, answer))
    ours = parse_output(token, text, size)
    assert ours.get("labels") == theirs.get("labels")
    assert [[math.floor(v) for v in shape] for shape in shapes_of(ours)] == shapes_of(theirs)
