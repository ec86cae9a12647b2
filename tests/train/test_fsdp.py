"""Two-process FSDP on CPU (gloo): `f2tune fit` with `trainer.strategy: fsdp`, launched as users launch it.

f2tune refuses FSDP without a GPU, and Lightning hands torch's FSDP no device on a CPU; torch's
FSDP itself runs on a CPU when given it as its device. The script below lifts the one and gives the
other; everything else is the run users get on GPUs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import tiny_recipe
from PIL import Image
from safetensors.torch import load_file

SCRIPT = """
import sys
import torch
from torch.distributed.fsdp import FullyShardedDataParallel
import f2tune.train.trainer as trainer
from f2tune.cli import main

trainer.check_fsdp_device = lambda recipe: None
wrap = FullyShardedDataParallel.__init__
FullyShardedDataParallel.__init__ = lambda self, *args, device_id=None, **kwargs: wrap(
    self, *args, device_id=device_id or torch.device("cpu"), **kwargs
)
sys.exit(main(sys.argv[1:]))
"""

VAL = [
    ("<OD>", "square<loc_100><loc_100><loc_600><loc_600>"),
    ("<CAPTION>", "a red square"),
    ("<CAPTION>", "a blue circle"),
    ("<CAPTION>", "a green square"),
    ("<CAPTION>", "a red circle"),
]
"""Dealt every other one: process 0 gets samples 0, 2, 4 (a batch of `<OD>` and a caption, two
`generate` calls, the first with a scoring pass; then a caption), process 1 gets 1 and 3 (one call)
and then nothing."""


def run_fsdp(tmp_path: Path, *arguments: str, before_main: str = "") -> subprocess.CompletedProcess:
    """The script (with `before_main` run before f2tune's main) in a new process group, which is
    killed whole if the processes wait on each other."""
    script = tmp_path / "fsdp_cpu.py"
    script.write_text(textwrap.dedent(SCRIPT).replace("sys.exit(main(", before_main + "\nsys.exit(main("))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with subprocess.Popen(
        [sys.executable, str(script), *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"the FSDP processes waited for each other until killed:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_fsdp_fit_validates_before_during_and_after_training_with_the_processes_in_step(tmp_path):
    """Validations before training, at step 2 and after the last step (3) on one wrapped module
    (Lightning wrapped it again at each, leaving the root's weights flat shards); the decay groups
    of full fine-tuning (FSDP shows every weight 1-D, which made them all `-no_decay`); the gradient
    norm, logged under DDP only."""
    (tmp_path / "images").mkdir()
    records = []
    for n, (prompt, target) in enumerate(VAL):
        Image.new("RGB", (64, 64), (40 * n, 0, 0)).save(tmp_path / "images" / f"{n}.png")
        records.append({"id": f"v{n}", "image": f"images/{n}.png", "prompt": prompt, "target": target})
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    trainer = {"devices": 2, "strategy": "fsdp", "max_steps": 3, "val_check_interval": 2, "loggers": ["csv"]}
    recipe = tiny_recipe(tmp_path, trainer=trainer)
    recipe["data"] |= {"val": [{"format": "jsonl", "path": str(tmp_path / "val.jsonl")}], "batch_size": 2}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML

    done = run_fsdp(tmp_path, "fit", str(tmp_path / "recipe.yaml"))

    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "t"
    folders = sorted(p.name for p in (run / "predictions").iterdir())
    assert folders == ["val-step000000", "val-step000002", "val-step000003"]
    for folder in folders:
        lines = {r: (run / "predictions" / folder / f"rank{r}.jsonl").read_text().splitlines() for r in (0, 1)}
        evaluated = {r: [json.loads(line)["id"] for line in lines[r]] for r in (0, 1)}
        assert evaluated == {0: ["v0", "v2", "v4"], 1: ["v1", "v3"]}  # the stand-ins' outputs written nowhere
        metrics = json.loads((run / "predictions" / folder / "metrics.json").read_text())
        assert {"OD/exact_match", "CAPTION/exact_match"} <= metrics.keys()
    groups = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"][0]["param_groups"]
    decay = {group["name"]: group["weight_decay"] for group in groups}
    parts = ("vision_tower", "projector", "language_model")
    assert decay == {**{part: 0.01 for part in parts}, **{f"{part}-no_decay": 0.0 for part in parts}}
    assert (run / "export" / "model.safetensors").exists()
    rows = list(csv.DictReader((run / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    norms = [float(row["train/grad_norm"]) for row in rows if row.get("train/grad_norm")]
    assert len(norms) == 3 and all(0 < norm < math.inf for norm in norms)  # of all shards together


@pytest.mark.slow
def test_fsdp_lora_checkpoints_hold_the_adapter(tmp_path):
    """The checkpoint keeps the trainable weights by their names before FSDP wrapped the layers (it
    kept none: the names did not match, and resume, validate and export read an untrained adapter)."""
    recipe = tiny_recipe(
        tmp_path,
        adaptation={"method": "lora"},
        lora={"r": 4},
        trainer={"devices": 2, "strategy": "fsdp", "max_steps": 2, "val_check_interval": 2, "loggers": ["csv"]},
        eval={"before_fit": False, "metric": "none"},
    )
    recipe["data"]["batch_size"] = 2
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))

    done = run_fsdp(tmp_path, "fit", str(tmp_path / "recipe.yaml"))

    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "t"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    exported = load_file(run / "export" / "adapter_model.safetensors")
    assert len(saved) == len(exported) > 0
    for name, value in exported.items():
        torch.testing.assert_close(saved["model." + name.replace(".weight", ".default.weight")], value)
    assert any(value.abs().sum() > 0 for name, value in exported.items() if "lora_B" in name)  # trained
    assert done.stdout.count("frozen and trainable weights in one unit") + done.stderr.count("in one unit") == 1


STOP = """
import os, signal
import lightning.pytorch as pl
import f2tune.train.run as run

class SigtermDuringStep4(pl.Callback):  # to the second process only
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 3 and trainer.global_rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)

original_fit = run.fit
run.fit = lambda recipe, resume=False, **options: original_fit(recipe, resume, [SigtermDuringStep4()], **options)
"""


@pytest.mark.slow
def test_a_stopped_fsdp_run_saves_its_step_from_every_process_and_resumes(tmp_path):
    """Each process holds a shard of the weights and optimizer state: all of them gather it into
    last.ckpt at the step they stop at (an FSDP run saved nothing, and resumed from its last
    validation)."""
    trainer = {"devices": 2, "strategy": "fsdp", "max_steps": 6, "val_check_interval": 100, "loggers": ["csv"]}
    trainer["check_val_every_n_epoch"] = None
    recipe = tiny_recipe(tmp_path, trainer=trainer, eval={"before_fit": False, "metric": "none"})
    recipe["data"] |= {"batch_size": 2, "val": []}
    recipe["export"] = {"enabled": False}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))
    last = tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt"

    stopped = run_fsdp(tmp_path, "fit", str(tmp_path / "recipe.yaml"), before_main=STOP)

    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert f"f2tune: error: stopped by SIGTERM at step 4: {last} holds step 4" in stopped.stderr
    assert torch.load(last, weights_only=False)["global_step"] == 4
    resumed = run_fsdp(tmp_path, "fit", str(tmp_path / "recipe.yaml"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=False)["global_step"] == 6
