"""Two-process DDP on CPU (gloo), launched the way users launch it: the command re-runs per rank."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import tiny_recipe
from PIL import Image
from test_fit import ADAPTER_EXPORT_FILES

SCRIPT = """
import json, os, sys
from pathlib import Path
import lightning.pytorch as pl
import torch.distributed as dist
import f2tune.train.run as run
from f2tune.recipe import validate_recipe

out = Path(sys.argv[1])
original_export = run.export_run

def recording_export(*args, **kwargs):
    (out / f"export_called_by_rank{dist.get_rank()}").write_text("")
    return original_export(*args, **kwargs)

run.export_run = recording_export

class RecordIds(pl.Callback):
    def __init__(self):
        self.ids = [[], []]
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ids[trainer.current_epoch].extend(batch["ids"])
    def on_train_end(self, trainer, pl_module):
        (out / f"ids_rank{trainer.global_rank}.json").write_text(json.dumps(self.ids))

recipe = validate_recipe(json.loads((out / "recipe.json").read_text()))
run.fit(recipe, extra_callbacks=[RecordIds()])
"""


@pytest.mark.slow
def test_two_process_ddp_trains_on_different_data_and_exports_once(tmp_path):
    """LoRA, so the feature cache is on: each process keeps its samples in the second epoch, which
    its cache serves entirely."""
    recipe = tiny_recipe(
        tmp_path,
        adaptation={"method": "lora"},
        lora={"r": 4},
        trainer={"devices": 2, "strategy": "ddp", "max_steps": 8, "val_check_interval": 4},
        eval={"before_fit": False},
    )
    recipe["data"]["batch_size"] = 2
    recipe["data"]["val"][0]["num_samples"] = 5  # 3 and 2: the second process's share padded
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    (first0, second0), (first1, second1) = [json.loads((tmp_path / f"ids_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(first0) == len(first1) == 8  # 16 samples, 4 steps x batch 2 on each rank per epoch
    assert not set(first0) & set(first1), "both ranks saw the same samples"
    assert set(second0) == set(first0) and set(second1) == set(first1)
    rows = list(csv.DictReader((tmp_path / "runs" / "t" / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    assert [float(r["train/image_cache_hit_rate"]) for r in rows if r.get("train/image_cache_hit_rate")] == [0, 1]
    predictions = tmp_path / "runs" / "t" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == ["val-step000004", "val-step000008"]  # one folder a step
    for folder in predictions.iterdir():
        assert sorted(p.name for p in folder.glob("rank*.jsonl")) == ["rank0.jsonl", "rank1.jsonl"]
        evaluated = [json.loads(line)["id"] for r in (0, 1) for line in (folder / f"rank{r}.jsonl").open()]
        assert len(evaluated) == len(set(evaluated)) == 5  # Lightning's sampler repeated the first sample
    assert sorted(p.name for p in tmp_path.glob("export_called_by_rank*")) == ["export_called_by_rank0"]
    export = tmp_path / "runs" / "t" / "export"
    assert {p.name for p in export.iterdir()} == ADAPTER_EXPORT_FILES


def fit_from_the_command_line(recipe: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """`f2tune fit` of `recipe` in a new process, which launches the others as a user's would."""
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "f2tune.cli", "fit", str(tmp_path / "recipe.yaml")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_recipe_problem_found_after_the_launch_is_said_once(tmp_path):
    """The validation interval is checked in each process's training loader, after Lightning
    launched them; the processes exit with the error, which only rank 0 prints."""
    trainer = {"devices": 2, "strategy": "ddp", "val_check_interval": 50, "check_val_every_n_epoch": 1}
    recipe = tiny_recipe(tmp_path, trainer=trainer)
    done = fit_from_the_command_line(recipe, tmp_path)
    assert done.returncode != 0
    assert done.stderr.count("f2tune: error: trainer.val_check_interval is 50 training batches") == 1, done.stderr
    assert "in each of the 2 processes" in done.stderr
    assert not (tmp_path / "runs" / "t").exists()  # the folder rank 0 made for the run is gone


STOP_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
import lightning.pytorch as pl
from f2tune.cli import main

class SignalDuringStep4(pl.Callback):  # to one process only; the others learn of it from it
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 3 and trainer.global_rank == int(os.environ["STOP_RANK"]):
            os.kill(os.getpid(), getattr(signal, os.environ["STOP_SIGNAL"]))

import f2tune.train.run as run
original_fit = run.fit
run.fit = lambda recipe, resume=False, **options: original_fit(recipe, resume, [SignalDuringStep4()], **options)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "by", "status", "rank"),
    [("SIGTERM", "SIGTERM", 143, 0), ("SIGINT", "Ctrl-C", 130, 0), ("SIGTERM", "SIGTERM", 143, 1)],
)
def test_a_stop_under_ddp_saves_the_step_on_rank_0_and_the_run_resumes(tmp_path, stop, by, status, rank):
    """Sent to one process, rank 0 (which Lightning's launcher started the other from) or the
    other alone, where Lightning's own handler paired a broadcast with rank 0's next collective:
    every process stops at the end of the step it came in."""
    recipe = tiny_recipe(
        tmp_path,
        trainer={"devices": 2, "strategy": "ddp", "max_steps": 6, "val_check_interval": 4, "loggers": ["csv"]},
        eval={"before_fit": False, "metric": "none"},
        export={"enabled": False},
    )
    recipe["data"].update(batch_size=2, val=[])
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    script = tmp_path / "stop_ddp.py"
    script.write_text(textwrap.dedent(STOP_SCRIPT))
    pythonpath = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath, "STOP_SIGNAL": stop, "STOP_RANK": str(rank)}
    command = [sys.executable, str(script), "fit", str(tmp_path / "recipe.yaml")]
    stopped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    last = tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt"
    assert stopped.returncode == status, stopped.stderr[-3000:]
    assert f"f2tune: error: stopped by {by} at step 4: {last} holds step 4" in stopped.stderr
    assert torch.load(last, weights_only=False)["global_step"] == 4
    if stop == "SIGINT":
        return  # the same checkpoint as SIGTERM's: resumed once, there

    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=False)["global_step"] == 6


@pytest.mark.slow
def test_a_process_whose_batch_was_all_skipped_still_takes_part_in_the_step(tmp_path):
    """One record per batch, one image broken: at its step one process has no sample while the
    other has one. Were it to skip its backward, the other would wait for its gradients forever.
    One validation sample for two processes: the second validates none, and still joins the sync
    of the loss (had it logged none, the processes' all-reduces would pair up wrongly)."""
    records = [{"image": "images/good.png", "prompt": "<CAPTION>", "target": "a square"}] * 4
    records[1] = {**records[1], "image": "images/broken.png"}
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "good.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    recipe = tiny_recipe(
        tmp_path,
        trainer={"devices": 2, "strategy": "ddp", "max_steps": 4, "loggers": ["csv"]},
        eval={"before_fit": False, "metric": "none"},
        export={"enabled": False},
    )
    recipe["data"] |= {
        "train": [{"format": "jsonl", "path": str(tmp_path / "train.jsonl")}],
        "val": [{"format": "shapes", "num_samples": 1, "seed": 2}],
        "batch_size": 1,
        "on_bad_record": "skip",
    }
    done = fit_from_the_command_line(recipe, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "runs" / "t" / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    assert [float(row["data/skipped_records"]) for row in rows if row["data/skipped_records"]] == [1.0, 1.0]
    assert len([row for row in rows if row.get("val/loss")]) == 2  # validations at steps 2 and 4
