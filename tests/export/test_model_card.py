"""What the model card says, checked against what the Hub accepts and what the run measured.

Each test here failed on an earlier card: a local base in `base_model` (the Hub refuses the upload),
a usage snippet that printed `</s><s>answer</s>` instead of the parsed answer, decoded otherwise
than the run measured, or did not run at all, and metrics shown as the exported weights' when the
run had measured another step.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import tiny_recipe

from f2tune.config import DataConfig
from f2tune.export.facts import gather_facts, hub_dataset_ids, loadable_base
from f2tune.export.model_card import CardFacts, card_metadata, render_model_card
from f2tune.export.writer import export_model
from f2tune.hub.names import is_hub_id
from f2tune.model.adapt import apply_adaptation
from f2tune.recipe import validate_recipe

HUB_BASE = "florence-community/Florence-2-base"


def recipe(**sections):
    return validate_recipe(tiny_recipe(Path("unused"), **sections))


def usage(card: str) -> str:
    return card.split("```python\n")[1].split("```")[0]


def test_a_local_base_stays_out_of_the_metadata_the_hub_validates():
    """The Hub answers `"base_model" with value "/runs/x/base_model" is not valid` and refuses the
    upload; the card says the base is local instead, and still names it in the usage code."""
    assert is_hub_id(HUB_BASE) and is_hub_id("gpt2")
    assert not any(map(is_hub_id, ["/runs/t/base_model", "./florence", "~/florence", "a/b/c", "../x", "C:\\m"]))
    local = CardFacts(base_model="/runs/t/base_model", kind="adapter", train_samples=2)
    assert "base_model" not in card_metadata(local)
    card = render_model_card(recipe(), local)
    assert "base_model" not in yaml.safe_load(card.split("---\n")[1])
    assert "The base model is a local folder" in card
    assert 'from_pretrained("/runs/t/base_model")' in usage(card)
    merged = render_model_card(recipe(), CardFacts(base_model="/runs/t/base_model", kind="model", train_samples=2))
    assert "the metadata names none" in merged and "/runs/t/base_model" not in usage(merged)
    hub = CardFacts(base_model=HUB_BASE, kind="model", train_samples=2)
    assert card_metadata(hub)["base_model"] == HUB_BASE and "local folder" not in render_model_card(recipe(), hub)


def test_dataset_metadata_names_hub_ids_only(tmp_path):
    """A dataset folder that is gone at export time (moved, another machine) is no Hub id either."""
    sources = [
        {"format": "hf_dataset", "path": "./gone"},
        {"format": "hf_dataset", "path": str(tmp_path / "gone")},
        {"format": "hf_dataset", "path": "HuggingFaceM4/DocumentVQA"},
    ]
    assert hub_dataset_ids(DataConfig(train=sources).train) == ["HuggingFaceM4/DocumentVQA"]


def test_the_usage_code_parses_the_answer_decoding_as_the_run_measured():
    facts = CardFacts(base_model=HUB_BASE, kind="model", train_samples=2, prompts=["<OD>"], tasks=["<OD>"])
    code = usage(render_model_card(recipe(eval={"max_new_tokens": 40, "num_beams": 2}), facts))
    assert "ids = model.generate(**inputs, max_new_tokens=40, num_beams=2, no_repeat_ngram_size=0)" in code
    assert 'print(processor.post_process_generation(text, task="<OD>", image_size=image.size))' in code
    facts.prompts = facts.tasks = ["<CAPTION>"]
    code = usage(render_model_card(recipe(eval={"max_new_tokens": None}), facts))
    assert "max_new_tokens=64, num_beams=3, no_repeat_ngram_size=3)" in code  # the task's own decoding


def test_the_usage_code_runs_as_written_for_every_kind_of_prompt():
    """A free-text prompt with quotes broke the snippet's string; a model trained on region prompts
    only was shown `<CAPTION>`, a task it never trained."""
    facts = CardFacts(base_model=HUB_BASE, kind="adapter", train_samples=2, prompts=['What is "this"?\nSay it.'])
    code = usage(render_model_card(recipe(), facts))
    compile(code, "usage", "exec")
    assert 'text="What is \\"this\\"?\\nSay it."' in code and "skip_special_tokens=True" in code
    facts.prompts = ["<REGION_TO_CATEGORY><loc_x1><loc_y1><loc_x2><loc_y2>"]
    card = render_model_card(recipe(), facts)
    assert 'text="<REGION_TO_CATEGORY><loc_250><loc_250><loc_750><loc_750>"' in usage(card)
    assert 'task="<REGION_TO_CATEGORY>"' in usage(card) and "the image's middle half" in card


def test_a_pinned_base_revision_is_in_the_usage_code_and_the_adapter_config(tmp_path, tiny_model):
    """adapter_config.json left `revision` out: `AutoPeftModel` loaded the base's main branch, not
    the commit the adapter was trained on."""
    pinned = recipe(model={"name_or_path": HUB_BASE, "revision": "abc123"}, adaptation={"method": "lora"})
    facts = gather_facts(pinned, tmp_path, "adapter")
    assert facts.base_revision == "abc123"
    code = usage(render_model_card(pinned, facts))
    assert f'base = AutoModelForImageTextToText.from_pretrained("{HUB_BASE}", revision="abc123")' in code
    assert f'AutoProcessor.from_pretrained("{HUB_BASE}", revision="abc123")' in code
    adapter = apply_adaptation(tiny_model, pinned.adaptation, pinned.lora)
    export_model(adapter, processor=None, recipe=pinned, target=tmp_path / "export", facts=facts)
    config = json.loads((tmp_path / "export" / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == (HUB_BASE, "abc123")
    local = gather_facts(recipe(model={"revision": "abc123"}), tmp_path, "adapter")  # the tiny model's saved copy
    assert local.base_revision is None and "revision=" not in usage(render_model_card(pinned, local))


def test_the_license_is_stated_where_known_or_set_and_said_unstated_otherwise(tmp_path):
    """Every card said `license: mit`, whatever the base model or the data."""
    for florence in (HUB_BASE, "microsoft/Florence-2-large-ft"):
        assert gather_facts(recipe(model={"name_or_path": florence}), tmp_path, "model").license == "mit"
    other = recipe(model={"name_or_path": "someone/florence2-docs"})
    facts = gather_facts(other, tmp_path, "model")
    card = render_model_card(other, facts)
    assert facts.license is None and "license" not in card_metadata(facts)
    assert "License: not stated." in card and "`export.license`" in card
    chosen = recipe(model={"name_or_path": "someone/florence2-docs"}, export={"license": "cc-by-nc-4.0"})
    facts = gather_facts(chosen, tmp_path, "model")
    assert card_metadata(facts)["license"] == "cc-by-nc-4.0"
    assert "License: `cc-by-nc-4.0`." in render_model_card(chosen, facts)


def test_prompts_with_backticks_or_line_breaks_stay_one_code_span():
    facts = CardFacts(base_model=HUB_BASE, kind="model", prompts=["Read `id` aloud", "`x`", "one\n- two"])
    card = render_model_card(recipe(), facts)
    assert '- ``Read `id` aloud``\n- `` `x` ``\n- `"one\\n- two"`\n' in card


def predictions(run: Path, name: str, value: float, ids: list[str]) -> None:
    folder = run / "predictions" / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"CAPTION/exact_match": value}))
    rows = [{"id": i, "prompt": "<CAPTION>"} for i in ids]
    (folder / "rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "rank1.jsonl").write_text(json.dumps(rows[0]) + "\n")  # a sampler's repeat, not another sample


def test_the_card_says_when_where_and_on_how_many_samples_metrics_were_measured(tmp_path):
    predictions(tmp_path, "val-step000020", 0.5, ["a", "b", "c"])
    card = render_model_card(recipe(), gather_facts(recipe(), tmp_path, "adapter", step=20, checkpoint="step 20 (x)"))
    assert "Measured by the run on 3 validation samples at step 20 (`predictions/val-step000020/metrics.json`" in card
    assert "Not measured on these weights" not in card


def test_a_second_evaluation_of_the_step_is_named_as_the_source(tmp_path):
    predictions(tmp_path, "val-step000020-2", 0.5, ["a", "b"])
    card = render_model_card(recipe(), gather_facts(recipe(), tmp_path, "adapter", step=20, checkpoint="step 20 (x)"))
    assert "on 2 validation samples at step 20 (`predictions/val-step000020-2/metrics.json`" in card


def test_metrics_of_another_step_are_not_passed_off_as_the_exported_weights(tmp_path):
    """The best checkpoint (step 10) had no metrics (`eval.every_n_validations: 2`): the card showed
    those of step 20 as if measured on it."""
    predictions(tmp_path, "val-step000020", 0.5, ["a"])
    card = render_model_card(recipe(), gather_facts(recipe(), tmp_path, "adapter", step=10, checkpoint="step 10 (b)"))
    assert "**Not measured on these weights**: the run measured no metrics at step 10" in card
    assert "at step 20 (`predictions/val-step000020/metrics.json`" in card


def test_the_end_of_fit_export_says_which_step_it_holds(tmp_path):
    card = render_model_card(recipe(), gather_facts(recipe(), tmp_path, "adapter", step=4))
    assert "Exported from the checkpoint at step 4 (final weights)." in card


def test_a_local_base_given_relative_is_named_absolute(tmp_path, monkeypatch):
    """`model.name_or_path: ./florence` went into adapter_config.json as it was: it loaded only from
    the folder the training ran in."""
    (tmp_path / "florence").mkdir()
    monkeypatch.chdir(tmp_path)
    assert loadable_base(recipe(model={"name_or_path": "./florence"}), tmp_path / "run") == str(tmp_path / "florence")
    assert loadable_base(recipe(model={"name_or_path": HUB_BASE}), tmp_path / "run") == HUB_BASE
