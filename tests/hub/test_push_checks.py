"""`f2tune push` looks at the folder before it sends anything: what it refuses, and why.

Each of these folders was uploaded before (any folder with a config.json passed), published as a
model that does not load; the checks run in this process, since they end before any request (the
endpoint given is a port nothing listens on: a request would fail with "cannot reach the Hub").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from f2tune.cli import main
from f2tune.export.atomic import OUTPUT_MARKER
from f2tune.hub.push import PushError, check_export, check_push_target, push_folder

NOWHERE = "http://127.0.0.1:9"


def push(folder: Path) -> None:
    push_folder(folder, "alice/m", token="hf_test", endpoint=NOWHERE)


def model_folder(folder: Path, processor: bool = True, tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "florence2"}))
    save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    if processor:
        (folder / "processor_config.json").write_text("{}")
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    (folder / "README.md").write_text("# card\n")
    (folder / OUTPUT_MARKER).write_text("export\n")
    return folder


def adapter_folder(folder: Path, base: str = "florence-community/Florence-2-base", weights: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
    if weights:
        save_file({"lora_A.weight": torch.zeros(2, 4)}, str(folder / "adapter_model.safetensors"))
    (folder / "README.md").write_text("# card\n")
    return folder


def test_a_whole_export_lists_its_files_without_the_marker(tmp_path):
    folder = model_folder(tmp_path / "export")
    assert check_export(folder) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
    ]


def test_a_run_folder_is_refused_naming_its_export(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    model_folder(run / "base_model")  # the tiny base a run saves holds a config.json, one level down
    with pytest.raises(PushError, match=r"is a run folder, not an export: push its export \(.*run/export\)"):
        push(run)


def test_a_half_written_export_is_refused_before_any_request(tmp_path):
    with pytest.raises(PushError, match=r"interrupted f2tune command left unfinished .*renamed to export\)"):
        push(model_folder(tmp_path / ".export.tmp-a1b2c3"))
    with pytest.raises(PushError, match=r"lacks the adapter's weights \(none of adapter_model.safetensors"):
        push(adapter_folder(tmp_path / "adapter", weights=False))
    with pytest.raises(PushError, match=r"lacks the processor"):
        push(model_folder(tmp_path / "no-processor", processor=False))
    with pytest.raises(PushError, match=r"lacks the tokenizer .*\(none of tokenizer.json, vocab.json\)"):
        push(model_folder(tmp_path / "no-tokenizer", tokenizer=False))
    truncated = model_folder(tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) - 8])
    with pytest.raises(PushError, match=r"model.safetensors is not a whole safetensors file"):
        push(truncated)
    sharded = model_folder(tmp_path / "sharded")
    index = {"weight_map": {"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(PushError, match=r"names shards that are not there \(model-00002-of-00002.safetensors\)"):
        push(sharded)


def test_other_outputs_and_missing_folders_are_named(tmp_path, capsys):
    predicted = model_folder(tmp_path / "preds")
    (predicted / OUTPUT_MARKER).write_text("predict\n")
    with pytest.raises(PushError, match=r"is the predict output of f2tune, not an export"):
        push(predicted)
    assert main(["push", str(tmp_path / "nope"), "--repo", "alice/m"]) == 2
    assert "nope does not exist: give an export folder" in capsys.readouterr().err


def test_an_adapter_naming_a_local_base_is_said(tmp_path, capsys):
    """Whoever downloads it gets an adapter_config.json naming a folder of the trainer's machine."""
    check_export(adapter_folder(tmp_path / "hub-base"))
    assert "local base model" not in capsys.readouterr().err
    check_export(adapter_folder(tmp_path / "local-base", base="/runs/t/base_model"))
    assert "names a local base model (/runs/t/base_model)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("repo", "rule"),
    [
        ("no-owner", "names no owner"),
        ("alice/../m", "in the form 'repo_name' or 'namespace/repo_name'"),
        ("alice/.m", "cannot start or end with '-' or '.'"),
        ("alice/m/x", "in the form 'repo_name' or 'namespace/repo_name'"),
        ("/alice/m", "in the form 'repo_name' or 'namespace/repo_name'"),
        ("a b/m", "must use alphanumeric chars"),
        ("me/x--y", "Cannot have -- or .."),
        ("me/model-", "cannot start or end with '-' or '.'"),
        ("me/m.git", "cannot end by '.git'"),
        ("me/" + "m" * 97, "maximum length is 96"),
    ],
)
def test_a_repo_id_the_hub_would_refuse_is_refused_before_any_request(repo, rule):
    """The check let `alice/.m`, `me/x--y`, `me/model-`, `me/m.git` and names over 96 characters
    through, which the Hub then refused after the checks (after the training, for `export.push_to`)."""
    with pytest.raises(PushError, match="expected a Hub repo id of the form user/name") as refused:
        check_push_target(repo, "--repo", token="hf_test")
    assert str(refused.value).startswith(f"--repo {repo!r}: ") and rule in str(refused.value)
    for fine in ("alice/m.v2-x_y", "me/" + "m" * 96, "Org-1/model_2.0"):
        assert check_push_target(fine, "--repo", token="hf_test") == "hf_test"
