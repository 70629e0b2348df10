"""The single-encoder VAE's config section `vae`: its phases and loss."""

from __future__ import annotations

from dataclasses import dataclass

from ...config.fields import option as _opt

SECTION = "vae"


@dataclass
class Section:
    """The single-encoder VAE translator (family ``vae``; the VAE report [R3]; docs/vae.md)."""

    layers: int = _opt(
        5,
        "stride-2 layers of the encoder (and transposed ones of each decoder); the bottleneck is "
        "crop / 2^layers pixels square",
        min=1,
        max=10,
        why="the channels double with every layer: 10 layers end at 512 times data.width / 2",
    )
    kl_weight: float = _opt(
        0.00025, "weight of the KL term: loss = MSE + (1 - MS-SSIM) + kl_weight * KL (the report's code)", min=0
    )
    epochs_shared: int = _opt(70, "phase 1: epochs of the encoder and the shared decoder on all domains", min=1)
    epochs_decoder: int = _opt(70, "phase 2: epochs of each domain's decoder on its own domain", min=1)
    encoder_freeze: str = _opt(
        "full",
        "phase 2: full = every encoder weight frozen, BatchNorm on its running "
        "statistics (the report's text); conv_only = the report code's freeze (the fc_mu / "
        "fc_var heads keep training, BatchNorm statistics keep updating)",
        choices=("full", "conv_only"),
    )
    test_sample_z: bool = _opt(
        False,
        "translate and eval draw z from q(z|x) by default (the report code); false: "
        "z = mu (gmdrit's default), --samples still draws",
    )
