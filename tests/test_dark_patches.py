"""loss.dark_patches: random-attribute translations that paint black patches where the input's fruit is lit."""

from __future__ import annotations

import torch

from conftest import make_dataset, random_term_step
from gmdrit_cli.families.drit_losses import dark_patches


def _orange_on_white(side: int = 16) -> torch.Tensor:
    """1 x 3 x side x side in [-1, 1]: a white image with an orange square (rows and columns 4 to 11)."""
    rgb = torch.ones(1, 3, side, side)
    rgb[:, :, 4:12, 4:12] = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)  # lightness 0.5, chroma 1
    return rgb * 2 - 1


def test_dark_patches_counts_the_share_and_depth_of_lit_fruit_painted_dark():
    source = _orange_on_white()
    assert dark_patches(source, source).item() == 0.0  # kept as it is
    burnt = source.clone()
    burnt[:, :, 4:8, 4:12] = -1.0  # the top half of the fruit black: depth 1 on half the mask
    assert abs(dark_patches(source, burnt).item() - 0.5) < 1e-6
    grey = source.clone()
    grey[:, :, 4:12, 4:12] = 0.1 * 2 - 1  # the whole fruit at lightness 0.1: depth (0.2 - 0.1) / 0.2
    assert abs(dark_patches(source, grey).item() - 0.5) < 1e-6
    background = source.clone()
    background[:, :, :4] = -1.0  # the white (colourless) background painted black is not this term's business
    assert dark_patches(source, background).item() == 0.0
    # an input without lit coloured pixels adds 0, and the batch mean counts it
    dark_input = torch.full_like(source, -1.0)
    both = dark_patches(torch.cat([source, dark_input]), torch.cat([burnt, burnt]))
    assert abs(both.item() - 0.25) < 1e-6


def test_dark_patches_gradient_lightens_the_dark_pixels_only():
    source = _orange_on_white()
    fake = source.clone()
    fake[:, :, 4:8, 4:12] = -0.9
    fake.requires_grad_(True)
    dark_patches(source, fake).backward()
    grad = fake.grad[0]
    assert (grad[:, 4:8, 4:12] < 0).all()  # descending lightens them
    assert grad[:, 8:12].abs().sum() == 0 and grad[:, :4].abs().sum() == 0


def test_the_term_is_the_weighted_mean_over_the_random_translations(tmp_path):
    root = make_dataset(tmp_path / "data")
    assert "dark_patches" not in random_term_step(root, "dark_patches", 0.0)[4]
    *_, terms, sources, fakes = random_term_step(root, "dark_patches", 7.0)
    expected = 7.0 * sum(dark_patches(sources, f) for f in fakes) / len(fakes)
    assert torch.allclose(terms["dark_patches"], expected)
