"""Two-process FSDP on CPU (gloo): `f2tune fit` with `trainer.strategy: fsdp`, launched as users launch it.

Lightning refuses `FSDPStrategy` without a GPU (torch's FSDP itself runs on CPU when given the CPU
as its device), so the script below lets a subclass through and hands FSDP the CPU; everything else
is the run users get on GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import tiny_recipe
from PIL import Image

SCRIPT = """
import sys
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp import FullyShardedDataParallel
import f2tune.train.trainer as trainer
from f2tune.cli import main

class CpuFSDP(FSDPStrategy):
    pass

trainer.FSDPStrategy = CpuFSDP
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


def run_fsdp(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """The script in a new process group, which is killed whole if the processes wait on each other."""
    script = tmp_path / "fsdp_cpu.py"
    script.write_text(textwrap.dedent(SCRIPT))
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
def test_fsdp_processes_with_different_tasks_and_shares_validate_in_step(tmp_path):
    (tmp_path / "images").mkdir()
    records = []
    for n, (prompt, target) in enumerate(VAL):
        Image.new("RGB", (64, 64), (40 * n, 0, 0)).save(tmp_path / "images" / f"{n}.png")
        records.append({"id": f"v{n}", "image": f"images/{n}.png", "prompt": prompt, "target": target})
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    recipe = tiny_recipe(
        tmp_path,
        trainer={"devices": 2, "strategy": "fsdp", "max_steps": 2, "val_check_interval": 2, "loggers": ["csv"]},
        eval={"before_fit": False},
    )
    recipe["data"] |= {"val": [{"format": "jsonl", "path": str(tmp_path / "val.jsonl")}], "batch_size": 2}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML

    done = run_fsdp(tmp_path, "fit", str(tmp_path / "recipe.yaml"))

    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "runs" / "t" / "predictions" / "val-step000002"
    evaluated = {r: [json.loads(line)["id"] for line in (folder / f"rank{r}.jsonl").open()] for r in (0, 1)}
    assert evaluated == {0: ["v0", "v2", "v4"], 1: ["v1", "v3"]}  # the stand-ins' outputs written nowhere
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"OD/exact_match", "CAPTION/exact_match"} <= metrics.keys()
    assert (tmp_path / "runs" / "t" / "export" / "model.safetensors").exists()
