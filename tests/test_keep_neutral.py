"""loss.keep_neutral: the change a random-attribute translation makes to its input's colourless pixels."""

from __future__ import annotations

import torch

from gmdrit_cli.families.drit_losses import NEUTRAL_CHROMA, neutral_change, neutral_weights


def _picture() -> torch.Tensor:
    """1 x 3 x 4 x 4 in [-1, 1]: a white left half, an orange right half."""
    image = torch.ones(1, 3, 4, 4)
    image[:, :, :, 2:] = torch.tensor([1.0, 0.3, -1.0]).view(1, 3, 1, 1)  # RGB (1, 0.65, 0): chroma 1
    return image


def test_the_weights_are_one_on_white_grey_black_and_zero_on_strong_colour():
    grey = torch.full((1, 3, 1, 1), -0.2)
    pale = torch.tensor([0.0, 0.0, 0.0 + NEUTRAL_CHROMA]).view(1, 3, 1, 1)  # chroma half the threshold
    assert neutral_weights(_picture())[0, 0].tolist() == [[1.0, 1.0, 0.0, 0.0]] * 4
    assert neutral_weights(grey).item() == 1.0 and neutral_weights(-torch.ones(1, 3, 1, 1)).item() == 1.0
    assert abs(neutral_weights(pale).item() - 0.5) < 1e-6


def test_only_a_change_of_the_colourless_pixels_counts():
    source = _picture()
    recoloured = source.clone()
    recoloured[:, :, :, 2:] = torch.tensor([0.8, -0.6, -0.6]).view(1, 3, 1, 1)  # the fruit turns red
    assert neutral_change(source, recoloured).item() == 0.0
    tinted = source.clone()
    tinted[:, :, :, :2] -= torch.tensor([0.6, 0.0, 0.3]).view(1, 3, 1, 1)  # the white background turns teal-ish
    # half the pixels weigh 1 and moved by a mean of 0.3 over RGB
    assert abs(neutral_change(source, tinted).item() - 0.5 * 0.3) < 1e-6


def test_the_term_is_trained_only_when_weighted(tmp_path):
    """With loss.keep_neutral > 0 the generator step has the term (weighted) and its gradient reaches G."""
    from conftest import make_dataset, random_term_step

    root = make_dataset(tmp_path / "data")
    model, images, code, t, terms, _, _ = random_term_step(root, "keep_neutral", 0.0)
    assert "keep_neutral" not in terms
    assert "keep_neutral_encoded" not in model.encoder_generator_terms(images, code, t)
    model, images, code, t, terms, sources, fakes = random_term_step(root, "keep_neutral", 10.0)
    expected = 10.0 * sum(neutral_change(sources, f) for f in fakes) / len(fakes)
    assert torch.allclose(terms["keep_neutral"], expected) and terms["keep_neutral"] > 0
    # ... and the encoder-generator step the same term on the translations with encoded attributes
    encoded = model.encoder_generator_terms(images, code, t)["keep_neutral_encoded"]
    assert torch.allclose(encoded, 10.0 * neutral_change(sources, t.fake_encoded))
    terms["keep_neutral"].backward()
    grads = [p.grad for p in model.networks["generator"].parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
