"""How predict decodes: the command line's settings, else a run's eval settings, else the task's."""

from __future__ import annotations

import pytest
import yaml
from helpers import tiny_recipe

from f2tune.errors import RecipeError
from f2tune.eval.evaluator import Decoding
from f2tune.predict.decoding import decoding_for
from f2tune.recipe import validate_recipe
from f2tune.tasks import TASKS

CAPTION = TASKS["<CAPTION>"]


def run_folder(tmp_path, **evaluation):
    """A run folder as fit leaves it, as far as predict reads it: its recipe."""
    recipe = tiny_recipe(tmp_path, eval=evaluation)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(validate_recipe(recipe).model_dump(mode="json")))
    return tmp_path / "run"


def test_a_run_is_decoded_as_its_validation_decoded(tmp_path):
    """The demo caps captions at 8 tokens: predicted with the task's 64, its answers were not those scored."""
    run = run_folder(tmp_path, max_new_tokens=6, num_beams=2)
    assert decoding_for(CAPTION, run, None, None) == Decoding(6, 2, CAPTION.no_repeat_ngram_size)
    assert decoding_for(CAPTION, run, 20, None) == Decoding(20, 2, CAPTION.no_repeat_ngram_size)


def test_other_sources_decode_with_the_tasks_settings_unless_told(tmp_path, tiny_dir):
    task = Decoding(CAPTION.max_new_tokens, CAPTION.num_beams, CAPTION.no_repeat_ngram_size)
    assert decoding_for(CAPTION, tiny_dir, None, None) == task
    assert decoding_for(CAPTION, "florence-community/Florence-2-base", None, 1) == Decoding(
        CAPTION.max_new_tokens, 1, CAPTION.no_repeat_ngram_size
    )


def test_a_run_whose_eval_section_cannot_be_read_says_so(tmp_path):
    run = run_folder(tmp_path)
    (run / "config.yaml").write_text(yaml.safe_dump({"eval": {"max_new_tokens": 0}}))
    with pytest.raises(RecipeError, match="the eval section of its recipe cannot be read"):
        decoding_for(CAPTION, run, None, None)


def test_a_checkpoint_is_decoded_as_its_run_validated(tmp_path):
    import torch

    recipe = validate_recipe(tiny_recipe(tmp_path, eval={"max_new_tokens": 5})).model_dump(mode="json")
    torch.save({"hyper_parameters": {"recipe": recipe}}, tmp_path / "best-step=4.ckpt")
    assert decoding_for(CAPTION, tmp_path / "best-step=4.ckpt", None, None).max_new_tokens == 5
