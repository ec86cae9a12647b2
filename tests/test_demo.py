"""The README's demo really learns: exact match on held-out shapes rises far above the untrained model's."""

from __future__ import annotations

import pytest
from conftest import REPO

from f2tune.recipe import load_recipe
from f2tune.train.run import fit


@pytest.mark.slow
def test_demo_recipe_learns_to_caption_held_out_shapes(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "demo_shapes.yaml", [f"trainer.output_dir={tmp_path}"])
    result = fit(recipe)
    before, after = result.metrics_before["val/CAPTION/exact_match"], result.metrics_after["val/CAPTION/exact_match"]
    assert before < 0.1
    assert after >= before + 0.4, (before, after)
    assert result.metrics_after["val/loss"] < 0.5 * result.metrics_before["val/loss"]
