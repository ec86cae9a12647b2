"""Florence2Module under a real Lightning loop: gradients are freed right after each optimizer step,
so none outlive it into the next forward, and accumulation still sums over its window."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_recipe
from torch.utils.data import DataLoader

from f2tune.data.collate import Florence2Collator
from f2tune.data.dataset import SampleDataset
from f2tune.model.compile import compile_blocks
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.module import Florence2Module


class GradientsAtBatchStart(pl.Callback):
    """Records, before each training batch's forward, whether any trainable weight holds a gradient."""

    def __init__(self) -> None:
        self.held: list[bool] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self.held.append(any(p.grad is not None for p in module.parameters() if p.requires_grad))


def bare_trainer(**options: Any) -> pl.Trainer:
    """A CPU Trainer without logging, checkpoints, progress bar or (unless `options` say) validation."""
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    return pl.Trainer(accelerator="cpu", enable_model_summary=False, **({"limit_val_batches": 0} | quiet | options))


def test_gradients_are_freed_after_each_step_and_kept_within_an_accumulation_window(
    tiny_model, processor, tmp_path
) -> None:
    recipe = validate_recipe(tiny_recipe(tmp_path, eval={"metric": "none"}))
    module = Florence2Module(tiny_model, processor, recipe)
    collate = Florence2Collator(processor, 16)
    dataset = SampleDataset(shape_samples(8, seed=3))
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate)
    probe = GradientsAtBatchStart()
    trainer = bare_trainer(max_steps=2, accumulate_grad_batches=2, callbacks=[probe])
    before = [p.detach().clone() for p in tiny_model.parameters()]
    trainer.fit(module, train_dataloaders=loader)
    assert probe.held == [False, True, False, True]
    assert all(p.grad is None for p in tiny_model.parameters())
    assert any(not torch.equal(old, new) for old, new in zip(before, tiny_model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("precision", "asked", "expected"),
    [("bf16-mixed", "auto", "eager"), ("32-true", "auto", "sdpa"), ("bf16-mixed", "sdpa", "sdpa")],
)
def test_auto_attention_is_settled_for_the_trainers_device_and_precision(
    tiny_model, processor, tmp_path, precision, asked, expected
) -> None:
    recipe = validate_recipe(tiny_recipe(tmp_path, model={"attn_implementation": asked}, eval={"metric": "none"}))
    module = Florence2Module(tiny_model, processor, recipe)
    loader = DataLoader(
        SampleDataset(shape_samples(2, seed=3)), batch_size=2, collate_fn=Florence2Collator(processor, 16)
    )
    bare_trainer(max_steps=1, precision=precision).fit(module, train_dataloaders=loader)
    configs = (tiny_model.config.vision_config, tiny_model.config.text_config)
    assert [c._attn_implementation for c in configs] == [expected, expected]


def test_a_compiled_model_is_evaluated_eager(tiny_model, processor, tmp_path) -> None:
    """Under `trainer.compile`, validation compiled every block anew (no_grad, its own batch size,
    generation's steps): the DaViT block reached dynamo's recompile limit in a tiny run's first
    steps, and training's later shapes then ran eager."""
    compiled = []

    def counting_backend(graph: torch.fx.GraphModule, inputs: list) -> Any:
        compiled.append(graph)
        return graph.forward

    recipe = validate_recipe(tiny_recipe(tmp_path, trainer={"compile": True}, eval={"metric": "none"}))
    compile_blocks(tiny_model, backend=counting_backend)
    module = Florence2Module(tiny_model, processor, recipe)
    loader = DataLoader(
        SampleDataset(shape_samples(2, seed=3)), batch_size=2, collate_fn=Florence2Collator(processor, 16)
    )
    losses = bare_trainer(limit_val_batches=1.0).validate(module, dataloaders=loader, verbose=False)
    assert losses[0]["val/loss"] > 0 and not compiled
