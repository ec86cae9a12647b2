"""Whole batches of records that `on_bad_record: skip` dropped while loading (images that no longer
decode): the step is skipped, and a split with nothing left stops the run with the reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from helpers import tiny_recipe
from PIL import Image

from f2tune.cli import main


def write_records(tmp_path: Path, name: str, images: list[str]) -> str:
    """A JSONL file of caption records for `good` (a black square) or `broken` (a cut PNG) images."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (32, 32)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    lines = [{"image": f"images/{image}.png", "prompt": "<CAPTION>", "target": "a square"} for image in images]
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def skipping_recipe(tmp_path: Path, train: list[str], val: list[str]) -> Path:
    """One record per batch, so that the broken image's batch has no sample left."""
    recipe = tiny_recipe(tmp_path, trainer={"val_check_interval": 4}, eval={"before_fit": False})
    recipe["data"] |= {
        "train": [{"format": "jsonl", "path": write_records(tmp_path, "train.jsonl", train)}],
        "val": [{"format": "jsonl", "path": write_records(tmp_path, "val.jsonl", val)}] if val else [],
        "batch_size": 1,
        "on_bad_record": "skip",
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_batch_whose_every_record_was_skipped_skips_its_step(tmp_path, capsys):
    recipe = skipping_recipe(tmp_path, ["good", "broken", "good", "good"], ["good", "broken"])
    assert main(["fit", str(recipe)]) == 0
    assert "training_step` returned `None`" not in capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "runs" / "t" / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    assert len([row for row in rows if row["train/loss"]]) == 3  # of 4 steps
    assert [float(row["data/skipped_records"]) for row in rows if row["data/skipped_records"]] == [1.0]
    assert [row["val/loss"] for row in rows if row["val/loss"]]  # one sample of two validated


def test_a_validation_set_whose_every_record_was_skipped_stops_the_run_with_the_reason(tmp_path, capsys):
    recipe = skipping_recipe(tmp_path, ["good"] * 4, ["broken"] * 2)
    assert main(["fit", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert (
        "f2tune: error: no validation sample could be read: data.on_bad_record: skip dropped every record of data.val"
    ) in err
    assert "Traceback" not in err


def test_an_epoch_without_one_readable_training_record_stops_the_run_before_exporting(tmp_path, capsys):
    """Rather than end with an export of the weights it started from, as if it had trained."""
    recipe = skipping_recipe(tmp_path, ["broken"] * 4, [])
    assert main(["fit", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "f2tune: error: no training sample could be read in epoch 0: data.on_bad_record: skip dropped all 4" in err
    assert not (tmp_path / "runs" / "t" / "export").exists()
