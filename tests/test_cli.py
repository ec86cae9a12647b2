"""The command line: errors are one clear message and exit code 2, never a traceback."""

from __future__ import annotations

import errno
import json

import pytest
import torch
import yaml
from helpers import tiny_recipe
from PIL import Image
from test_recipe import MINIMAL

from f2tune.cli import main
from f2tune.commands import fit as fit_command
from f2tune.errors import RunStopped


def test_print_config_shows_the_effective_recipe(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert main(["fit", str(path), "--print-config", "lora.r=4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lora"]["r"] == 4 and printed["trainer"]["run_name"] == "r"


def test_recipe_errors_exit_2_with_the_message(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert main(["fit", str(path), "trainer.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("f2tune: error: ") and "did you mean 'trainer.max_steps'" in err and "Traceback" not in err


def test_a_folder_or_an_unknown_flag_is_named_with_the_commands_usage(tmp_path, capsys):
    """A folder was "recipe not found"; an unknown flag showed the usage of f2tune, not of fit."""
    assert main(["fit", str(tmp_path)]) == 2
    assert f"f2tune: error: recipe is a folder, not a file: {tmp_path}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(tmp_path), "--bogus"])
    err = capsys.readouterr().err
    assert err.startswith("usage: f2tune fit ") and "f2tune fit: error: unrecognized arguments: --bogus" in err


def test_data_errors_stop_before_the_model_loads(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    recipe = {**MINIMAL, "model": {"name_or_path": str(tmp_path / "no-such-model")}}
    recipe["data"] = {"train": [{"format": "jsonl", "path": str(tmp_path / "missing.jsonl")}]}
    recipe["trainer"] = {"max_steps": 1, "output_dir": str(tmp_path / "runs")}
    path.write_text(yaml.safe_dump(recipe))
    assert main(["fit", str(path)]) == 2
    assert "JSONL file not found" in capsys.readouterr().err


def test_model_that_cannot_be_loaded_is_one_line_with_advice(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    recipe = {**MINIMAL, "model": {"name_or_path": str(tmp_path / "no-such-model")}}
    recipe["trainer"] = {"max_steps": 1, "output_dir": str(tmp_path / "runs")}
    path.write_text(yaml.safe_dump(recipe))
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model.name_or_path: no such folder: " in err and "Traceback" not in err


def test_lightnings_advert_is_not_shown_beside_the_run(caplog):
    from lightning.pytorch.utilities import rank_zero_info

    from f2tune.log import setup_logging

    setup_logging()
    with caplog.at_level("INFO", logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_an_error_found_in_a_loader_worker_is_its_message_not_the_workers_traceback(tmp_path, capsys):
    """An image that no longer decodes, found mid-epoch by a loader worker process."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    lines = [{"image": f"images/{name}.png", "prompt": "<CAPTION>", "target": "x"} for name in ("good", "broken")]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    recipe = tiny_recipe(tmp_path)
    recipe["data"] |= {"train": [{"format": "jsonl", "path": str(tmp_path / "d.jsonl")}], "val": [], "num_workers": 1}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"f2tune: error: {tmp_path / 'd.jsonl'}:2: cannot read image" in err
    assert "data.on_bad_record: skip drops them" in err and "Traceback" not in err and "worker process" not in err


def test_a_target_limit_beyond_the_decoders_positions_is_refused(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    recipe["data"]["max_target_tokens"] = 5000
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["fit", str(path)]) == 2
    assert "data.max_target_tokens is 5000, but the model's decoder has 256 positions" in capsys.readouterr().err


def test_a_stopped_run_exits_with_the_signals_status(monkeypatch, capsys):
    """A fit stopped by SIGTERM exits 143, as a shell reports a process the signal ended, so a
    script's `f2tune fit ... && f2tune push ...` does not go on."""

    def stopped(args):
        raise RunStopped("stopped by SIGTERM at step 3: ...", 143)

    monkeypatch.setattr(fit_command, "run", stopped)
    assert main(["fit", "recipe.yaml"]) == 143
    assert capsys.readouterr().err == "f2tune: error: stopped by SIGTERM at step 3: ...\n"


def test_auto_resume_starts_a_new_run_then_continues_it(tmp_path, capsys):
    """One command line for a job a scheduler may start again: the first start trains from step 0,
    the next continues from `last.ckpt`; with `--resume` the same second start would be needed."""
    recipe = tiny_recipe(tmp_path, trainer={"max_steps": 2}, eval={"before_fit": False, "metric": "none"})
    recipe["export"] = {"enabled": False}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    last = tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt"
    assert main(["fit", str(path), "--auto-resume"]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == 2
    assert main(["fit", str(path), "--auto-resume", "trainer.max_steps=4"]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == 4
    assert "--resume: changed since step 2: trainer.max_steps 2 -> 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not both
        main(["fit", str(path), "--resume", "--auto-resume"])


def test_a_full_disk_is_one_line_that_says_what_is_kept(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/t/checkpoints/.last.ckpt.tmp-x")

    monkeypatch.setattr(fit_command, "run", full)
    assert main(["fit", "recipe.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("f2tune: error: No space left on device (runs/t/checkpoints/.last.ckpt.tmp-x). ")
    assert "run the command again (a fit with --resume)" in err and err.count("\n") == 1

    def broken(args):
        raise OSError("not about a disk")  # any other OSError is a bug to see whole

    monkeypatch.setattr(fit_command, "run", broken)
    with pytest.raises(OSError, match="not about a disk"):
        main(["fit", "recipe.yaml"])


def test_ctrl_c_outside_training_is_one_line_not_a_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_command, "run", interrupted)
    assert main(["fit", "recipe.yaml"]) == 130
    assert capsys.readouterr().err == "f2tune: interrupted\n"


@pytest.mark.parametrize(
    "code, text",
    [(errno.EACCES, "Permission denied"), (errno.EPERM, "Operation not permitted")],
    ids=["EACCES", "EPERM"],
)
def test_a_folder_the_user_may_not_write_is_one_line_that_says_what_to_do(monkeypatch, capsys, code, text):
    """A run folder of another user, or an immutable one, ended in a PermissionError traceback."""

    def denied(args):
        raise PermissionError(code, text, "runs/t/predictions/val-step000004")

    monkeypatch.setattr(fit_command, "run", denied)
    assert main(["fit", "recipe.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"f2tune: error: {text} (runs/t/predictions/val-step000004): the user running f2tune ")
    assert "give that user access" in err and "or give another folder" in err and err.count("\n") == 1


def test_a_permission_error_of_no_file_is_shown_whole(monkeypatch):
    """Refused a signal or a socket, not a file: no disk advice, the traceback of the bug."""

    def denied(args):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fit_command, "run", denied)
    with pytest.raises(PermissionError):
        main(["fit", "recipe.yaml"])
