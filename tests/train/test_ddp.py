"""Two-process DDP on CPU (gloo), launched the way users launch it: the command re-runs per rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import tiny_recipe
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
        self.ids = []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ids.extend(batch["ids"])
    def on_train_end(self, trainer, pl_module):
        (out / f"ids_rank{trainer.global_rank}.json").write_text(json.dumps(self.ids))

recipe = validate_recipe(json.loads((out / "recipe.json").read_text()))
run.fit(recipe, extra_callbacks=[RecordIds()])
"""


@pytest.mark.slow
def test_two_process_ddp_trains_on_different_data_and_exports_once(tmp_path):
    recipe = tiny_recipe(
        tmp_path,
        adaptation={"method": "lora"},
        lora={"r": 4},
        trainer={"devices": 2, "strategy": "ddp", "max_steps": 3, "val_check_interval": 3},
        eval={"before_fit": False},
    )
    recipe["data"]["batch_size"] = 2
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    ids = [json.loads((tmp_path / f"ids_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == 6  # 3 steps x batch 2 on each rank
    assert not set(ids[0]) & set(ids[1]), "both ranks saw the same samples"
    assert sorted(p.name for p in tmp_path.glob("export_called_by_rank*")) == ["export_called_by_rank0"]
    export = tmp_path / "runs" / "t" / "export"
    assert {p.name for p in export.iterdir()} == ADAPTER_EXPORT_FILES
