"""Generation returns clean text plus one probability per generated token."""

from __future__ import annotations

from f2tune.config import EvalConfig
from f2tune.data.collate import Florence2Collator
from f2tune.eval.generate import generate
from f2tune.testing.shapes import shape_samples


def test_generation_texts_tokens_and_probabilities(processor, tiny_model):
    samples = shape_samples(3, seed=4)
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in samples]
    batch = Florence2Collator(processor, 16)(items)
    for beams in (1, 2):
        outputs = generate(tiny_model.eval(), processor, batch, EvalConfig(max_new_tokens=5, num_beams=beams))
        assert len(outputs) == 3
        for out in outputs:
            assert len(out.token_ids) == len(out.probabilities) <= 6
            assert all(0.0 <= p <= 1.0 for p in out.probabilities)
            assert "<s>" not in out.text and "</s>" not in out.text and "<pad>" not in out.text
