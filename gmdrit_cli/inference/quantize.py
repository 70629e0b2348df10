"""Int8 weights for small exports (the pretrained model inside the package).

Symmetric per-output-channel quantisation: a float tensor ``w`` with at least 2 dimensions and at least
``MIN_ELEMENTS`` elements is stored as ``round(w / s)`` in int8 (clamped to [-127, 127]) plus the fp32
scale ``s = max|w[o]| / 127`` of each output channel ``o`` (dimension 0) under ``KEY + SCALE_SUFFIX``.
Biases, normalisation parameters, buffers and small tensors stay as they are. Dequantising gives back
fp32 tensors with an error of at most ``s / 2`` per element; the embedded model's metrics are measured
after the round trip (README "The pretrained model").
"""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"
MIN_ELEMENTS = 1024
FORMAT = "int8-symmetric-per-output-channel"


def quantize_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The int8 form of a state dict (name -> tensor); see the module docstring."""
    out: dict[str, torch.Tensor] = {}
    for key, w in tensors.items():
        if w.is_floating_point() and w.dim() >= 2 and w.numel() >= MIN_ELEMENTS:
            w = w.detach().float()
            scale = w.abs().flatten(1).amax(dim=1).clamp_min(1e-12) / 127.0  # O
            shape = (-1,) + (1,) * (w.dim() - 1)
            out[key] = torch.round(w / scale.view(shape)).clamp(-127, 127).to(torch.int8).contiguous()
            out[key + SCALE_SUFFIX] = scale.contiguous()
        else:
            out[key] = w.detach().contiguous()
    return out


def dequantize_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_tensors`: every quantised tensor back in fp32, scales dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(key + SCALE_SUFFIX)
        if scale is not None:
            out[key] = t.to(torch.float32).mul_(scale.view((-1,) + (1,) * (t.dim() - 1)))
        else:
            out[key] = t
    return out
