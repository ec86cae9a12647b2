"""Exports of a checkpoint after training (`f2tune export`) against the one fit wrote."""

from __future__ import annotations

from helpers import tiny_recipe
from safetensors.torch import load_file

from f2tune.export.checkpoint import export_checkpoint
from f2tune.recipe import validate_recipe
from f2tune.train.run import fit


def test_a_bf16_true_run_exports_the_same_weights_in_the_same_dtype_after_training(tmp_path):
    """The checkpoint's bfloat16 weights went into the recipe's float32 model and were written at
    twice the size of fit's own export of the same step."""
    raw = tiny_recipe(tmp_path, trainer={"precision": "bf16-true"}, eval={"before_fit": False, "metric": "none"})
    result = fit(validate_recipe(raw))
    out = export_checkpoint(result.run_dir, tmp_path / "out", which="last")
    at_fit, after = (load_file(folder / "model.safetensors") for folder in (result.run_dir / "export", out))
    assert at_fit.keys() == after.keys()
    for name, weight in at_fit.items():
        assert after[name].dtype == weight.dtype
        assert after[name].equal(weight), name
