"""How `f2tune predict` decodes: as the run's validation did, unless the command line says otherwise.

A run's recipe may set `eval.max_new_tokens`, `num_beams` or `no_repeat_ngram_size` (the demo
caps captions at 8 tokens); predicting with the task table's defaults instead gave other answers
than those the run's validation scored. Other sources (a Hub id, an exported folder) decode with
the task's own settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from f2tune.config import EvalConfig
from f2tune.errors import RecipeError, first_sentence
from f2tune.eval.evaluator import Decoding
from f2tune.predict.load import is_run_folder
from f2tune.tasks import TaskSpec
from f2tune.train.locate import checkpoint_contents


def decoding_for(spec: TaskSpec, source: str | Path, max_new_tokens: int | None, num_beams: int | None) -> Decoding:
    """The decoding of `spec`: the command line's values, else the run's `eval` settings where
    `source` is a run folder or one of its checkpoints, else the task's."""
    settings = run_eval_settings(source) or EvalConfig()
    given = {"max_new_tokens": max_new_tokens, "num_beams": num_beams}
    return Decoding.of(spec, settings.model_copy(update={k: v for k, v in given.items() if v is not None}))


def run_eval_settings(source: str | Path) -> EvalConfig | None:
    """The `eval` section of the recipe a run folder (`config.yaml`) or a checkpoint holds; None
    for any other source."""
    path = Path(source)
    raw: Any = None
    if path.is_file() and path.suffix == ".ckpt":
        raw = checkpoint_contents(path).get("hyper_parameters", {}).get("recipe")
    elif is_run_folder(path):
        raw = yaml.safe_load((path / "config.yaml").read_text())
    if not isinstance(raw, dict):
        return None
    try:
        return EvalConfig.model_validate(raw.get("eval") or {})
    except ValidationError as err:
        raise RecipeError(
            f"{source}: the eval section of its recipe cannot be read ({first_sentence(err)}); predict from its "
            "export instead"
        ) from None
