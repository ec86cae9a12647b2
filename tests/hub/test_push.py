"""`f2tune push` and `export.push_to` against a local fake Hub: what arrives, and one-line errors.

The pushes run in subprocesses: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE (which the
test suite sets) at import time, and the CLI's exit code and printed output are what is tested.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fake_hub import FakeHub, HubState
from helpers import tiny_recipe
from safetensors.torch import save_file

from f2tune.export.atomic import OUTPUT_MARKER
from f2tune.hub.names import REPO_PLACEHOLDER_NOTE

TOKEN = "hf_f2tuneTestSecretToken123456"


@pytest.fixture
def hub():
    server = FakeHub(HubState(token=TOKEN))
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    weights = {"lora_A.weight": torch.arange(2560, dtype=torch.float32).reshape(40, 64)}  # 10 KiB
    save_file(weights, str(folder / "adapter_model.safetensors"))
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# card\n")
    (folder / OUTPUT_MARKER).write_text("export\n")  # as f2tune export leaves it
    return folder


def f2tune(args: list[str], endpoint: str, tmp_path: Path, token: str = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_TOKEN=token, HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "f2tune.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_push_creates_the_repo_and_uploads_every_file(hub, export_dir, tmp_path):
    done = f2tune(["push", str(export_dir), "--repo", "alice/tiny-lora", "--private"], hub.url, tmp_path)
    assert done.returncode == 0, done.stderr
    repo = hub.state.repos["alice/tiny-lora"]
    assert repo["private"] is True
    uploaded = {p.name: p.read_bytes() for p in export_dir.iterdir() if p.name != OUTPUT_MARKER}
    assert repo["branches"]["main"] == uploaded  # the marker of f2tune's output folders stays local
    assert hub.state.unexpected == []
    assert ("POST", "/api/repos/create") in hub.state.calls
    assert ("POST", "/api/models/alice/tiny-lora/commit/main") in hub.state.calls
    assert set(hub.state.authorizations) == {f"Bearer {TOKEN}"}
    assert hub.state.card_metadata == [{"library_name": "peft"}] * 2  # checked before the repo, then by the commit
    assert TOKEN not in done.stdout + done.stderr


def test_push_to_a_branch_of_an_existing_repo(hub, export_dir, tmp_path):
    assert f2tune(["push", str(export_dir), "--repo", "alice/m"], hub.url, tmp_path).returncode == 0
    (export_dir / "README.md").write_text("# v2\n")
    done = f2tune(["push", str(export_dir), "--repo", "alice/m", "--revision", "v2"], hub.url, tmp_path)
    assert done.returncode == 0, done.stderr
    branches = hub.state.repos["alice/m"]["branches"]
    assert branches["v2"]["README.md"] == b"# v2\n" and branches["main"]["README.md"] != b"# v2\n"
    assert hub.state.repos["alice/m"]["private"] is False and hub.state.unexpected == []


def test_refused_token_is_one_line_without_the_token(hub, export_dir, tmp_path):
    hub.state.refuse = True
    before = digest(export_dir)
    done = f2tune(["push", str(export_dir), "--repo", "alice/m"], hub.url, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("f2tune: error: ") and done.stderr.count("\n") == 1
    assert "refused the token" in done.stderr and "HF_TOKEN" in done.stderr and "unchanged" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert digest(export_dir) == before and hub.state.repos == {}


def test_no_network_is_one_line_and_leaves_the_export(export_dir, tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = digest(export_dir)
    done = f2tune(["push", str(export_dir), "--repo", "alice/m"], f"http://127.0.0.1:{port}", tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("f2tune: error: cannot reach the Hub") and done.stderr.count("\n") == 1
    assert TOKEN not in done.stdout + done.stderr and digest(export_dir) == before


def test_bad_arguments_are_named(export_dir, tmp_path):
    done = f2tune(["push", str(tmp_path), "--repo", "alice/m"], "http://127.0.0.1:9", tmp_path)
    assert done.returncode == 2 and "is not an export folder" in done.stderr
    done = f2tune(["push", str(export_dir), "--repo", "no-owner"], "http://127.0.0.1:9", tmp_path)
    assert done.returncode == 2 and "user/name" in done.stderr
    done = f2tune(["push", str(export_dir), "--repo", "alice/m"], "http://127.0.0.1:9", tmp_path, token="")
    assert done.returncode == 2 and "no Hugging Face token to push to alice/m, which --repo names" in done.stderr


def test_recipe_push_to_uploads_the_export_at_the_end_of_fit(hub, tmp_path):
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False, "metric": "none"})
    raw["adaptation"] = {"method": "lora"}
    raw["export"] = {"push_to": "alice/from-fit"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    done = f2tune(["fit", str(tmp_path / "r.yaml")], hub.url, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    export = tmp_path / "runs" / "t" / "export"
    uploaded = {p.name: p.read_bytes() for p in export.iterdir() if p.name not in (OUTPUT_MARKER, "README.md")}
    files = hub.state.repos["alice/from-fit"]["branches"]["main"]
    assert {k: v for k, v in files.items() if k != "README.md"} == uploaded
    card = (export / "README.md").read_text()
    assert REPO_PLACEHOLDER_NOTE in card
    expected = card.replace(REPO_PLACEHOLDER_NOTE, "").replace('"THIS_FOLDER_OR_REPO"', '"alice/from-fit"')
    assert files["README.md"].decode() == expected
    assert "THIS_FOLDER_OR_REPO" not in expected  # the sentence on it went with it
    assert TOKEN not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("repo", "token", "said"),
    [
        ("not a repo", TOKEN, "f2tune: error: export.push_to 'not a repo': expected a Hub repo id"),
        ("alice/from--fit", TOKEN, "export.push_to 'alice/from--fit': expected a Hub repo id of the form user/name"),
        ("alice/from-fit", "", "error: no Hugging Face token to push to alice/from-fit, which export.push_to names"),
    ],
)
def test_a_push_that_cannot_happen_stops_the_fit_before_training(tmp_path, repo, token, said):
    """It was found after the training, and said as `--repo`, an option the user never gave."""
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False, "metric": "none"})
    raw["export"] = {"push_to": repo}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    done = f2tune(["fit", str(tmp_path / "r.yaml")], "http://127.0.0.1:9", tmp_path, token=token)
    assert done.returncode == 2 and said in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "runs" / "t").exists()


def test_a_refused_push_after_fit_keeps_the_summary_and_the_export(hub, tmp_path):
    hub.state.refuse = True
    raw = tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False, "metric": "none"})
    raw["export"] = {"push_to": "alice/from-fit"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    done = f2tune(["fit", str(tmp_path / "r.yaml")], hub.url, tmp_path)
    assert done.returncode == 2
    assert re.search(r"f2tune: export: \S*runs/t/export \(final weights\)", done.stderr), done.stderr[-3000:]
    assert done.stderr.rstrip().splitlines()[-1].startswith("f2tune: error: export.push_to: the Hub at")
    assert "(f2tune push uploads it again)" in done.stderr
    assert (tmp_path / "runs" / "t" / "export" / "config.json").is_file()


def test_private_push_to_an_existing_public_repo_is_refused_before_uploading(hub, export_dir, tmp_path):
    """`--private` only sets a new repo's visibility: the export went public, without a word."""
    assert f2tune(["push", str(export_dir), "--repo", "alice/m"], hub.url, tmp_path).returncode == 0
    (export_dir / "README.md").write_text("# secret v2\n")
    done = f2tune(["push", str(export_dir), "--repo", "alice/m", "--private"], hub.url, tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "alice/m exists and is public; --private only makes a new repo private" in done.stderr
    assert hub.state.repos["alice/m"]["branches"]["main"]["README.md"] != b"# secret v2\n"


def test_refused_card_metadata_names_each_problem(hub, export_dir, tmp_path):
    """The Hub's reasons were cut to "ValueError: Invalid metadata in README.md." (its first line)."""
    problem = '"base_model" with value "/runs/t/base_model" is not valid. Use a model id from https://hf.co/models.'
    hub.state.metadata_errors = [problem]
    done = f2tune(["push", str(export_dir), "--repo", "alice/m"], hub.url, tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"the Hub refused the metadata of {export_dir / 'README.md'} ({problem})" in done.stderr
    assert hub.state.repos == {}  # checked before the repo is created: a refused card leaves no empty repo


def test_the_uploaded_card_names_the_repo_and_branch_in_its_usage_code(hub, export_dir, tmp_path):
    card = 'model = PeftModel.from_pretrained(base, "THIS_FOLDER_OR_REPO")\n`THIS_FOLDER_OR_REPO` is this folder\n'
    (export_dir / "README.md").write_text(card)
    done = f2tune(["push", str(export_dir), "--repo", "alice/m", "--revision", "v2"], hub.url, tmp_path)
    assert done.returncode == 0, done.stderr
    uploaded = hub.state.repos["alice/m"]["branches"]["v2"]["README.md"].decode()
    assert uploaded == card.replace('"THIS_FOLDER_OR_REPO"', '"alice/m", revision="v2"')
    assert (export_dir / "README.md").read_text() == card  # the local export is only read
    assert [call for call in hub.state.calls if "/commit/" in call[1]] == [("POST", "/api/models/alice/m/commit/v2")]
