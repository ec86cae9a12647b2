"""`f2tune export` on any checkpoint of a run: plain peft / transformers load it with its outputs."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import lightning.pytorch as pl
import peft.peft_model
import pytest
import torch
import yaml
from helpers import tiny_recipe
from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoModelForImageTextToText, AutoProcessor

import f2tune
from f2tune.cli import main
from f2tune.config import DataConfig, JsonlSource
from f2tune.data.collate import Florence2Collator
from f2tune.data.sample import Sample
from f2tune.eval.generate import MODEL_INPUTS
from f2tune.export.atomic import OUTPUT_MARKER
from f2tune.export.checkpoint import export_checkpoint
from f2tune.export.facts import gather_facts, hub_dataset_ids, measured_metrics, shown_prompt
from f2tune.export.model_card import CardFacts, card_metadata, render_model_card
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.run import fit


class Snapshots(pl.Callback):
    """The model's weights after each validation, i.e. what the checkpoint of that step holds."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_validation_end(self, trainer, pl_module):
        self.by_step[trainer.global_step] = {k: v.clone() for k, v in pl_module.model.state_dict().items()}
        self.model = pl_module.model


def logits(model, processor) -> torch.Tensor:
    items = [
        {"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target}
        for s in shape_samples(3, seed=9)
    ]
    batch = Florence2Collator(processor, 16)(items)
    model.eval()
    with torch.no_grad():
        return model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"]).logits


def trained_at(snapshots: Snapshots, step: int):
    model = copy.deepcopy(snapshots.model)
    model.load_state_dict(snapshots.by_step[step])
    return model


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lora")
    recipe = tiny_recipe(tmp_path, adaptation={"method": "lora"}, lora={"r": 4, "target": "all"})
    recipe["trainer"].update(max_steps=6, save_top_k=3)  # keeps best-step=2, 4 and 6: any of them can be exported
    snapshots = Snapshots()
    result = fit(validate_recipe(recipe), extra_callbacks=[snapshots])
    return result, snapshots


@pytest.mark.parametrize(
    "source, which, step",
    [("run", "best", None), ("run", "last", 6), ("checkpoints/best-step=2.ckpt", "best", 2)],
    ids=["run-best", "run-last", "intermediate-ckpt-path"],
)
def test_adapter_and_merged_exports_of_any_checkpoint_give_its_outputs(lora_run, tmp_path, source, which, step):
    result, snapshots = lora_run
    source = result.run_dir if source == "run" else result.run_dir / source
    ckpt = result.best_checkpoint if step is None else str(result.run_dir / "checkpoints" / f"best-step={step}.ckpt")
    step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    processor = AutoProcessor.from_pretrained(result.run_dir / "base_model")
    expected = logits(trained_at(snapshots, step), processor)

    adapter = export_checkpoint(source, tmp_path / "adapter", kind="adapter", which=which)
    assert {p.name for p in adapter.iterdir()} == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        OUTPUT_MARKER,
    }
    config = json.loads((adapter / "adapter_config.json").read_text())
    base = AutoModelForImageTextToText.from_pretrained(config["base_model_name_or_path"])
    assert torch.allclose(logits(PeftModel.from_pretrained(base, adapter), processor), expected, atol=1e-5)

    assert main(["export", str(ckpt), "--kind", "merged", "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged")
    merged_processor = AutoProcessor.from_pretrained(tmp_path / "merged")
    assert torch.allclose(logits(merged, merged_processor), expected, atol=1e-5)
    assert f"step {step} (" in (adapter / "README.md").read_text()


def test_best_and_last_are_told_apart(lora_run, tmp_path):
    result, _ = lora_run
    best = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)["global_step"]
    card = export_checkpoint(result.run_dir, tmp_path / "a", which="best") / "README.md"
    assert f"step {best} (best-step={best}.ckpt)" in card.read_text()
    card = export_checkpoint(result.run_dir, tmp_path / "b", which="last") / "README.md"
    assert "step 6 (last.ckpt)" in card.read_text()


def test_checkpoint_choice_is_refused_for_a_checkpoint_file_and_checked_for_a_run(lora_run, tmp_path, capsys):
    """`--checkpoint best` beside a .ckpt file was ignored (the file was exported), and an unknown
    choice was found only after the run folder was read."""
    result, _ = lora_run
    out = tmp_path / "out"
    assert main(["export", str(result.last_checkpoint), "--checkpoint", "best", "--out", str(out)]) == 2
    assert "--checkpoint best picks among a run folder's checkpoints, but" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(result.run_dir), "--checkpoint", "bets", "--out", str(out)])
    assert "argument --checkpoint: invalid choice: 'bets'" in capsys.readouterr().err
    assert not out.exists()


def test_model_card_states_metadata_task_recipe_data_metrics_usage_and_version(lora_run, tmp_path):
    result, _ = lora_run
    card = (export_checkpoint(result.last_checkpoint, tmp_path / "x") / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert "base_model" not in meta  # a local folder: the Hub refuses anything but a model id there
    assert f"`{(result.run_dir / 'base_model').resolve()}`" in body
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "image-text-to-text"
    assert {"florence-2", "f2tune"} <= set(meta["tags"]) and "datasets" not in meta  # no Hub dataset
    assert "license" not in meta and "License: not stated." in body  # random weights: no terms to inherit
    assert "## Tasks and prompt format" in body and "`<CAPTION>`" in body
    assert "| shapes | `<CAPTION>` | 16 |" in body and "on 16 samples" in body
    recipe_yaml = body.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(recipe_yaml) == validate_recipe(yaml.safe_load(recipe_yaml)).model_dump(mode="json")
    assert yaml.safe_load(recipe_yaml)["lora"]["r"] == 4
    source, metrics = measured_metrics(result.run_dir, 6)
    assert source == "predictions/val-step000006" and f"`{source}/metrics.json`" in body
    assert all(f"| {k} | {v:.4f} |" in body for k, v in metrics.items())
    assert "PeftModel.from_pretrained(base" in body and "AutoProcessor.from_pretrained" in body
    assert f"f2tune {f2tune.__version__}" in body


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_the_cards_usage_code_runs_as_written_and_prints_the_parsed_answer_the_run_measured(
    lora_run, tmp_path, kind, capsys
):
    """Copied from the card, the folder's path given for the repo id: it printed the raw decoding
    (`</s><s>answer</s>`), generated with other settings than the run measured with."""
    result, _ = lora_run
    out = export_checkpoint(result.last_checkpoint, tmp_path / kind, kind=kind)
    code = (out / "README.md").read_text().split("```python\n")[1].split("```")[0]
    sample = shape_samples(1, seed=2)[0]  # the first validation sample of `tiny_recipe`
    sample.image.render().save(tmp_path / "image.png")
    code = code.replace('"THIS_FOLDER_OR_REPO"', repr(str(out))).replace(
        '"image.jpg"', repr(str(tmp_path / "image.png"))
    )
    capsys.readouterr()
    exec(compile(code, "usage", "exec"), {})
    printed = capsys.readouterr().out.strip()
    records = (result.run_dir / "predictions" / "val-step000006" / "rank0.jsonl").read_text().splitlines()
    measured = next(json.loads(r) for r in records if json.loads(r)["id"] == sample.id)
    assert printed == repr({"<CAPTION>": measured["generated"]})


def test_sources_of_one_name_each_get_their_row_with_their_tasks(tmp_path, write_jsonl):
    """Two sources over one file (one per task) carry one name; the card once listed them as one
    source with the last one's sample count."""
    path = write_jsonl([{"image": "images/shapes-5-0.png", "prompt": "What colour?", "target": "red"}])
    recipe = tiny_recipe(tmp_path)
    recipe["data"]["train"] = [{"format": "jsonl", "path": str(path)}, {"format": "shapes", "num_samples": 3}]
    recipe["data"]["train"][1]["name"] = "train"
    facts = gather_facts(validate_recipe(recipe), tmp_path, "adapter")
    card = render_model_card(validate_recipe(recipe), facts)
    assert "| train | free text | 1 |\n| train | `<CAPTION>` | 3 |" in card and "on 4 samples" in card


def test_the_card_counts_the_training_data_where_only_it_is_readable(tmp_path):
    """An export elsewhere (no validation data there) still counts the training samples; without
    the training data the card says its sizes are unknown."""
    recipe = validate_recipe(tiny_recipe(tmp_path))
    recipe.data.val = [JsonlSource(format="jsonl", path=str(tmp_path / "gone.jsonl"))]
    assert [(row.name, row.samples) for row in gather_facts(recipe, tmp_path, "adapter").datasets] == [("shapes", 16)]
    recipe.data.train = recipe.data.val
    facts = gather_facts(recipe, tmp_path, "adapter")
    assert facts.train_samples is None and [(row.name, row.samples) for row in facts.datasets] == [("gone", None)]


def test_the_card_shows_coco_sizes_without_boxes_as_not_applicable():
    facts = CardFacts(base_model="b", kind="adapter", train_samples=2)
    facts.metrics = {"OD/map": 0.25, "OD/map_large": -1.0}
    card = render_model_card(validate_recipe(tiny_recipe(Path("unused"))), facts)
    assert "| OD/map | 0.2500 |\n| OD/map_large | n/a |\n\nn/a: no reference box of that size" in card


def test_the_card_metadata_names_hub_datasets_only(tmp_path):
    (tmp_path / "local").mkdir()
    sources = [
        {"format": "hf_dataset", "path": "HuggingFaceM4/DocumentVQA", "split": "train"},
        {"format": "hf_dataset", "path": str(tmp_path / "local")},
        {"format": "hf_dataset", "path": "HuggingFaceM4/DocumentVQA", "split": "validation"},
        {"format": "shapes"},
    ]
    ids = hub_dataset_ids(DataConfig(train=sources).train)
    assert ids == ["HuggingFaceM4/DocumentVQA"]
    facts = CardFacts(base_model="florence-community/Florence-2-base", kind="adapter", train_samples=3)
    assert "datasets" not in card_metadata(facts)
    facts.hub_datasets = ids
    assert card_metadata(facts)["datasets"] == ["HuggingFaceM4/DocumentVQA"]


def test_metrics_prefer_the_exported_step_then_the_latest(tmp_path):
    for name, value in [("val-step000002", 0.2), ("val-step000004", 0.4), ("test-step000003", 0.3)]:
        (tmp_path / "predictions" / name).mkdir(parents=True)
        (tmp_path / "predictions" / name / "metrics.json").write_text(json.dumps({"m": value}))
    assert measured_metrics(tmp_path, 2) == ("predictions/val-step000002", {"m": 0.2})
    assert measured_metrics(tmp_path, 7) == ("predictions/val-step000004", {"m": 0.4})
    assert measured_metrics(tmp_path / "none") is None


def test_a_later_evaluation_of_the_same_step_is_read_as_that_step(tmp_path):
    """`f2tune validate` of a step fit validated files its metrics in `val-step000002-2`: the
    newer of the two is the step's metrics, and neither passes for another step's."""
    for name, value, written in [("val-step000002", 0.2, 1), ("val-step000002-2", 0.25, 2), ("val-step000004", 0.4, 3)]:
        (tmp_path / "predictions" / name).mkdir(parents=True)
        (tmp_path / "predictions" / name / "metrics.json").write_text(json.dumps({"m": value}))
        os.utime(tmp_path / "predictions" / name / "metrics.json", (written, written))
    assert measured_metrics(tmp_path, 2) == ("predictions/val-step000002-2", {"m": 0.25})
    assert measured_metrics(tmp_path, 7) == ("predictions/val-step000004", {"m": 0.4})


def test_full_run_exports_a_model_and_refuses_an_adapter(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, eval={"before_fit": False, "metric": "none"})
    snapshots = Snapshots()
    result = fit(validate_recipe(recipe), extra_callbacks=[snapshots])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    (out / OUTPUT_MARKER).write_text("export\n")  # an earlier export, so replaceable
    capsys.readouterr()
    assert main(["export", str(result.run_dir), "--kind", "adapter", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("f2tune: error: ") and "--kind adapter needs a LoRA checkpoint" in err
    assert "--kind merged" in err and sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "keep.txt"]

    assert main(["export", str(result.run_dir), "--checkpoint", "last", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "ignored" not in err  # the saved recipe lists `lora:`, as every section
    assert "Writing model shards" not in err  # transformers' bar: f2tune says where the export went
    assert not (out / "keep.txt").exists()
    loaded = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert torch.allclose(logits(loaded, processor), logits(trained_at(snapshots, 4), processor), atol=1e-5)
    assert "library_name: transformers" in (out / "README.md").read_text()


def test_a_checkpoint_without_recipe_uses_the_runs_config_yaml(lora_run, tmp_path):
    result, _ = lora_run
    state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)
    del state["hyper_parameters"]
    bare = result.run_dir / "checkpoints" / "bare.ckpt"
    torch.save(state, bare)
    try:
        assert (export_checkpoint(bare, tmp_path / "x") / "adapter_config.json").is_file()
    finally:
        bare.unlink()


def test_exporting_into_the_run_folder_is_refused(lora_run, capsys):
    """Refused as holding "files f2tune did not write" (the run's own); its checkpoint folder too."""
    result, _ = lora_run
    before = sorted(p.name for p in result.run_dir.iterdir())
    for into in (result.run_dir, result.run_dir / "checkpoints"):
        assert main(["export", str(result.run_dir), "--out", str(into)]) == 2
        assert f"--out {into} holds the checkpoint being exported ({result.run_dir})" in capsys.readouterr().err
    assert sorted(p.name for p in result.run_dir.iterdir()) == before


def test_not_a_run_is_one_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "neither a run folder nor a .ckpt file" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_the_card_shows_the_prompts_structured_samples_train():
    """Their `prompt` is empty until loaded (built from the annotation): the card showed `` and its
    snippet ran the processor on an empty prompt."""

    def sample(task: str, reference: dict | None, prompt: str = "") -> Sample:
        return Sample(id="1", image=Path("a.png"), prompt=prompt, target="", origin="x", task=task, reference=reference)

    assert shown_prompt(sample("<OD>", {"boxes": [[1, 2, 3, 4]], "labels": ["cat"]})) == "<OD>"
    grounding = sample("<CAPTION_TO_PHRASE_GROUNDING>", {"query": "a cat", "boxes": [], "labels": []})
    assert shown_prompt(grounding) == "<CAPTION_TO_PHRASE_GROUNDING>a cat"
    assert shown_prompt(sample("<REGION_TO_CATEGORY>", {"region": [1, 2, 3, 4], "text": "cat"})) == (
        "<REGION_TO_CATEGORY><loc_x1><loc_y1><loc_x2><loc_y2>"
    )
    assert shown_prompt(sample("", {"query": "What colour?", "text": "red", "answers": ["red"]})) == "What colour?"
    assert shown_prompt(sample("<CAPTION>", None, prompt="<CAPTION>")) == "<CAPTION>"
    facts = CardFacts(base_model="b", kind="adapter", train_samples=2)
    facts.prompts = ["<REGION_TO_CATEGORY><loc_x1><loc_y1><loc_x2><loc_y2>", "<OD>"]
    assert 'processor(text="<OD>"' in render_model_card(validate_recipe(tiny_recipe(Path("unused"))), facts)


def test_a_full_disk_is_one_line_and_no_export_folder(lora_run, tmp_path, monkeypatch, capsys):
    """safetensors' SafetensorError for a full disk was a 20-line traceback (exit 1)."""

    def no_space(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    result, _ = lora_run
    out = tmp_path / "out"
    monkeypatch.setattr(peft.peft_model, "safe_save_file", no_space)
    assert main(["export", str(result.run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("f2tune: error:") == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"f2tune: error: No space left on device ({out}). What was written")
    assert not list(tmp_path.iterdir())
