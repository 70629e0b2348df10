"""The fast paths shared by `train` and `benchmark`: autocast, loss scaling, channels-last, optimizers.

Each is a config key of the ``speed`` section; ``auto`` turns a path on where it is faster on that
device and keeps training correct there.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``; a clear error otherwise."""
    from ..errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device '{name}'; use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but no CUDA device is available; use cpu")
    return torch.device(name)


#: oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) at or above which it runs bf16 natively
_ONEDNN_BF16_ISAS = {
    "ALL",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
}


@cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX) and torch may use it, where bf16
    autocast pays off. A cap on the instruction set (``ONEDNN_MAX_CPU_ISA`` below AVX512_CORE_BF16, or
    ``ATEN_CPU_CAPABILITY`` below avx512, e.g. to reproduce an AVX2 machine) means no: bf16 would then be
    emulated, several times slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read()
    except OSError:
        return False
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    if isa not in _ONEDNN_BF16_ISAS:
        return False
    return torch.backends.cpu.get_cpu_capability().upper().startswith(("AVX512", "AMX"))


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA ``device``: 7.5 on Colab's T4, 8.0 on an A100."""
    return tuple(torch.cuda.get_device_capability(device))


def amp_choice(setting: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``speed.amp`` on ``device`` (None = full fp32) and why, in a few words.

    ``auto`` on CUDA follows the compute capability, not ``torch.cuda.is_bf16_supported()``: with its
    default ``including_emulation=True`` that is true on a T4 (7.5), which has no bf16 hardware (bf16
    matmuls run emulated, slower than fp32, and cuDNN has no bf16 convolutions below 8.0). So: bf16 from
    8.0 (Ampere) on; fp16 with dynamic loss scaling on 7.x (tensor cores, fp16 only); fp32 below."""
    if setting in ("off", "bf16", "fp16"):
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setting], f"speed.amp={setting}"
    if device.type == "cuda":
        major, minor = cuda_capability(device)
        cc = f"compute capability {major}.{minor}"
        if major >= 8:
            return torch.bfloat16, f"{cc}: native bf16"
        if major == 7:
            return torch.float16, f"{cc}: fp16 tensor cores, no bf16 hardware; dynamic loss scaling"
        return None, f"{cc}: no bf16 hardware nor fp16 tensor cores"
    if cpu_has_bf16():
        return torch.bfloat16, "CPU with native bf16 (AVX512-BF16 / AMX)"
    return None, "CPU without native bf16"


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``speed.amp`` on ``device`` (None = full fp32); see :func:`amp_choice`."""
    return amp_choice(setting, device)[0]


def use_tf32(setting: str, device: torch.device) -> bool:
    """``speed.tf32``: let fp32 matmuls and convolutions on CUDA use TensorFloat-32 tensor cores (10-bit
    mantissa, fp32 range and accumulation). auto = on from compute capability 8.0, the first GPUs that
    have them; elsewhere the switch would change nothing. Applies process-wide; returns whether it is on."""
    if device.type != "cuda":
        return False
    on = setting == "on" or (setting == "auto" and cuda_capability(device)[0] >= 8)
    precision = "tf32" if on else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision
    return on


def use_cudnn_benchmark(setting: str, device: torch.device) -> bool:
    """``speed.cudnn_benchmark``: let cuDNN time its convolution algorithms for each new input shape and keep
    the fastest. Training shapes are fixed (B x 3 x crop x crop; a phase's last, smaller batch is one more
    shape), so the timing is paid once. auto = on for CUDA. Process-wide; returns whether it is on."""
    on = device.type == "cuda" and setting != "off"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = on
    return on


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def channels_last(setting: str, device: torch.device, dtype: torch.dtype | None) -> bool:
    """Channels-last pays off with reduced precision (oneDNN on CPU, tensor cores on GPU)."""
    if setting in ("on", "off"):
        return setting == "on"
    return dtype is not None


def optimizer_options(setting: str) -> dict:
    """Keyword arguments of ``torch.optim.Adam`` for ``speed.optimizer``.

    auto = fused, on CUDA and on the CPU: one pass over each parameter and its state instead of a
    chain of full-size temporaries (about 3% of a 108-px GM-DRIT iteration on this project's CPU)."""
    if setting == "auto":
        setting = "fused"
    return {"fused": setting == "fused", "foreach": setting == "foreach"}


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory(setting: str, device: torch.device) -> bool:
    """``speed.keep_freed_memory``: ask glibc's allocator to keep freed CPU memory for reuse.

    By default glibc serves every block over 32 MiB with a fresh ``mmap`` and gives it back on free, so
    each iteration page-faults its large tensors in again (a 1024 x 1024 x 3 x 3 fp32 weight or Adam
    temporary is 38 MiB); on this project's 2-core CPU that cost 12% of a 108-px GM-DRIT iteration.
    With mmap off and a high trim threshold, freed blocks stay in the heap and the next iteration
    reuses them. Process-wide; ``auto`` = on for CPU training on Linux. Returns whether it was applied.
    """
    if setting == "off" or (setting == "auto" and device.type != "cpu"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to tune
        return False


class LossScaler:
    """Dynamic loss scaling for fp16 autocast, written for manual gradients (``autograd.grad``).

    Scale the loss, unscale the gradients, and skip the whole update when any gradient is not finite
    (halving the scale); grow the scale after ``growth_interval`` clean updates. bf16 needs none of it.
    """

    def __init__(self, scale: float = 2.0**16, growth_interval: int = 2000):
        self.scale = scale
        self.growth_interval = growth_interval
        self.clean_steps = 0

    def unscale(self, grads: list[torch.Tensor | None]) -> bool:
        """Divide ``grads`` by the scale in place; return True when they are all finite."""
        present = [g for g in grads if g is not None]
        for g in present:
            g.div_(self.scale)
        finite = bool(torch.stack([torch.isfinite(g).all() for g in present]).all()) if present else True
        if not finite:
            self.scale /= 2.0
            self.clean_steps = 0
        return finite

    def update(self) -> None:
        self.clean_steps += 1
        if self.clean_steps % self.growth_interval == 0:
            self.scale *= 2.0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "clean_steps": self.clean_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.clean_steps = float(state["scale"]), int(state["clean_steps"])
