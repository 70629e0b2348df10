"""loss.match_encoded_colour: random-attribute translations pulled to the subject colour that a real target image's
encoded attribute gives the same input."""

from __future__ import annotations

import torch

from conftest import make_dataset, random_term_step
from gmdrit_cli.families.drit_losses import subject_colour


def test_the_term_is_the_weighted_colour_gap_to_the_encoded_translation_and_trains_only_the_random_ones(tmp_path):
    root = make_dataset(tmp_path / "data")
    assert "match_encoded_colour" not in random_term_step(root, "match_encoded_colour", 0.0)[4]
    model, _, _, t, terms, sources, fakes = random_term_step(root, "match_encoded_colour", 4.0)
    target = subject_colour(t.fake_encoded, sources)
    expected = 4.0 * sum((subject_colour(f, sources) - target).abs().mean() for f in fakes) / len(fakes)
    assert torch.allclose(terms["match_encoded_colour"], expected) and expected > 0
    model.networks.zero_grad()
    terms["match_encoded_colour"].backward()
    grads = [p.grad for p in model.networks["generator"].parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # the encoded translation is the target, not moved: the attribute encoder gets nothing through it
    encoder = [p.grad for p in model.networks["attribute_encoder"].parameters() if p.grad is not None]
    assert all(g.abs().sum() == 0 for g in encoder)
