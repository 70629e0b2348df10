"""The CLI side of ONNX: ``gmdrit export --format onnx`` and ``gmdrit translate --checkpoint model.onnx``.

Called from the commands in ``infer.py`` (which own the options); rendering only. The translate path
imports neither torch nor the torch path's modules: its start-up is Python, typer/rich, numpy, Pillow and
onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import InferenceError
from .app import console
from .infer import _default_temperature, _header, _progress, _report_failures, _seed, _table, _temperature_note


def translate_onnx(
    inputs: list[str],
    *,
    domain: str,
    samples: Optional[int],
    component: Optional[int],
    temperature: Optional[float],
    reference: Optional[list[Path]],
    run: Optional[Path],
    checkpoint: Optional[Path],
    seed: Optional[int],
    size: Optional[int],
    square: bool,
    out: Path,
    device: str,
    threads: int,
    no_ema: bool,
    pretrained: bool = False,
) -> None:
    """``pretrained``: ``checkpoint`` is the packaged ONNX copy of the pretrained model (described as that)."""
    from ..inference.onnx_translate import load_onnx, translate
    from ..limits import MAX_THREADS, bounded

    if run is not None and checkpoint is not None:
        raise InferenceError("give either --run or --checkpoint, not both")
    if device not in ("cpu", "auto"):
        raise InferenceError(
            f"--device {device}: an ONNX model runs on the CPU (onnxruntime); leave --device out "
            "or use the safetensors export for a GPU"
        )
    if no_ema:
        raise InferenceError(
            "--no-ema: an ONNX export holds the weights chosen when it was exported; export again with --no-ema"
        )
    if threads < 0:
        raise InferenceError(f"--threads {threads}: give a positive count, or 0 for onnxruntime's default")
    bounded(threads, "--threads", 0, MAX_THREADS, "more threads than cores only slow onnxruntime down")
    model = load_onnx(checkpoint if checkpoint is not None else run, threads)
    model.pretrained = pretrained
    seed = _seed(seed)
    mode = (
        f"attributes of {len(reference)} reference image(s)"
        if reference
        else "the prior's mean attribute (z = mu; --samples N draws)"
        if samples is None and not model.meta.get("random_by_default", True)
        else f"{samples or 5} random attribute(s)"
        + (f" of component {component}" if component is not None else "")
        + _temperature_note(temperature, _default_temperature(model.cfg, domain))
    )
    progress, update = _progress(_header(model, seed, size or model.cfg.data.crop, mode), inputs)
    with progress:
        result = translate(
            model,
            inputs,
            domain=domain,
            samples=samples,
            component=component,
            temperature=temperature,
            references=reference,
            seed=seed,
            size=size,
            square=square,
            out=out,
            on_progress=update,
        )
    if result.items:
        table = _table("input", f"outputs (in {result.out})", "grid", "size")
        for item in result.items:
            first, last = item.outputs[0].name, item.outputs[-1].name
            table.add_row(
                str(item.source),
                first if first == last else f"{first} .. {last}",
                item.grid.name,
                f"{item.size[0]}x{item.size[1]}",
            )
        console.print(table)
        console.print(
            f"wrote {len(result.written)} files into {result.out} ({len(result.items)} input(s) "
            f"to '{result.domain}', {result.seconds:.1f} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    _report_failures(result, "translated")


def export_onnx_command(run: Path, out: Path, *, int8: bool, meta: dict[str, str], no_ema: bool, force: bool) -> None:
    from ..inference.onnx_export import export_onnx

    result = export_onnx(run, out, extra_metadata=meta, ema=not no_ema, force=force, int8=int8)
    console.print(f"exported {result.source}", markup=False, highlight=False, soft_wrap=True)
    if result.int8 is not None:
        console.print(
            f"int8: {result.int8['tensors']} weight tensors stored as int8 with DequantizeLinear (per output "
            "channel); checked against torch with the same int8 weights",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    sizes = ", ".join(str(s) for s in result.sizes_checked)
    console.print(
        f"wrote {', '.join(f.name for f in result.files)} into {result.out} ({result.bytes / 1e6:.1f} MB); "
        f"onnxruntime matches torch within {result.max_difference:.2g} (at most allowed 1e-4) at "
        f"{sizes} px",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"use it with: gmdrit translate IMAGE --domain DOMAIN --checkpoint {result.out / 'model.onnx'} "
        "(no torch needed)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
