"""Image features are written at the prompt's `<image>` tokens, and features that do not fit the
prompt (a processor and a model of different image sizes) are refused with a message."""

from __future__ import annotations

import pytest
import torch

from f2tune.data.collate import Florence2Collator
from f2tune.model.inputs import merge_image_features
from f2tune.testing.shapes import shape_samples


def _batch(processor) -> dict:
    samples = shape_samples(2, seed=4)
    items = [{"id": s.id, "image": s.image.render(), "prompt": "<CAPTION>", "target": s.target} for s in samples]
    return Florence2Collator(processor, 16)(items)


@torch.no_grad()
def test_features_land_on_the_image_tokens_and_text_keeps_its_embeddings(tiny_model, processor):
    batch = _batch(processor)
    ids = batch["input_ids"]
    features = tiny_model.model.get_image_features(batch["pixel_values"]).pooler_output
    merged = merge_image_features(tiny_model, ids, features)
    image = ids == tiny_model.config.image_token_id
    assert torch.equal(merged[image], features.flatten(0, 1))
    assert torch.equal(merged[~image], tiny_model.get_input_embeddings()(ids)[~image])


@torch.no_grad()
def test_features_of_another_image_size_are_refused(tiny_model, processor):
    batch = _batch(processor)
    features = tiny_model.model.get_image_features(batch["pixel_values"]).pooler_output
    with pytest.raises(RuntimeError, match="different image sizes"):
        merge_image_features(tiny_model, batch["input_ids"], features[:, :-1])
