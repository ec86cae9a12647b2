"""Generation returns clean text plus one probability per generated token."""

from __future__ import annotations

import torch

from f2tune.config import EvalConfig
from f2tune.data.collate import Florence2Collator
from f2tune.eval.generate import MODEL_INPUTS, generate
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


def test_without_probabilities_the_same_tokens(processor, tiny_model):
    samples = shape_samples(2, seed=5)
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in samples]
    batch = Florence2Collator(processor, 16)(items)
    decoding = EvalConfig(max_new_tokens=8, num_beams=2)
    scored = generate(tiny_model.eval(), processor, batch, decoding)
    plain = generate(tiny_model, processor, batch, decoding, with_probabilities=False)
    assert [(g.text, g.token_ids) for g in plain] == [(g.text, g.token_ids) for g in scored]
    assert all(g.probabilities is None for g in plain)


def test_same_tokens_as_generate_and_the_probabilities_beam_search_ranked_them_by(processor, tiny_model):
    """Encoding once and scoring afterwards changes nothing: the tokens are `generate`'s from the
    raw inputs, and each probability is the one `output_scores` would have kept for it (except
    where a logits processor forced `<s>` or `</s>`: there `output_scores` says 1.0, and the model's
    own probability is the truer confidence; box scores skip those tokens anyway)."""
    samples = shape_samples(3, seed=8)
    items = [{"id": s.id, "image": s.image.render(), "prompt": s.prompt, "target": s.target} for s in samples]
    batch = Florence2Collator(processor, 16)(items)
    model = tiny_model.eval()
    for beams in (1, 3):
        decoding = EvalConfig(max_new_tokens=12, num_beams=beams, no_repeat_ngram_size=0)
        ours = generate(model, processor, batch, decoding)
        with torch.no_grad():
            output = model.generate(
                **{k: batch[k] for k in MODEL_INPUTS},
                max_new_tokens=12,
                num_beams=beams,
                do_sample=False,
                return_dict_in_generate=True,
                output_scores=True,
            )
        beam_indices = getattr(output, "beam_indices", None)
        scores = model.compute_transition_scores(output.sequences, output.scores, beam_indices, normalize_logits=True)
        tokenizer = processor.tokenizer
        forced = {tokenizer.bos_token_id, tokenizer.eos_token_id}
        for generation, ids, row in zip(ours, output.sequences[:, 1:].tolist(), scores.exp().tolist()):
            kept = [(i, p) for i, p in zip(ids, row) if i != tokenizer.pad_token_id]
            assert generation.token_ids == [i for i, _ in kept]
            free = [n for n, i in enumerate(generation.token_ids) if i not in forced]
            assert len(free) >= 5
            torch.testing.assert_close(
                [generation.probabilities[n] for n in free], [kept[n][1] for n in free], atol=1e-5, rtol=1e-4
            )
