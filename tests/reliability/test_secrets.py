"""Hub tokens never reach logs, checkpoints' recipes, model cards or exported configs."""

from __future__ import annotations

from helpers import tiny_recipe

from f2tune.recipe import validate_recipe
from f2tune.train.run import fit

FAKE_TOKEN = "hf_f2tuneFakeTokenForTheLeakTest0123456789"


def test_a_fit_writes_the_token_nowhere(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, trainer={"max_steps": 2}))
    result = fit(recipe)
    written = [p for p in result.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "README.md" for p in written) and any(p.suffix == ".ckpt" for p in written)
    leaked = [str(p) for p in written if FAKE_TOKEN.encode() in p.read_bytes()]
    assert not leaked
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in captured.out + captured.err
