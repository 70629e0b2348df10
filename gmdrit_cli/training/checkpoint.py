"""Checkpoints as folders: ``model.safetensors``, ``optim.safetensors``, ``state.json``.

A checkpoint is written under a temporary name, every file fsynced, then renamed into place; the
``latest`` pointer is replaced last, so a process killed at any moment leaves either the previous
checkpoint or the new one, never half of one. Nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .. import atomic, jsonfile
from ..errors import CheckpointError
from ..outputs import latest_name, os_error_line, umask_mode

MODEL_FILE, OPTIM_FILE, STATE_FILE, LATEST = "model.safetensors", "optim.safetensors", "state.json", "latest"
_NAME = re.compile(r"^iter_(\d{7})$")  # checkpoint_name: iterations are at most 9,999,999 (limits)

log = logging.getLogger("gmdrit")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def network_tensors(networks: nn.ModuleDict) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as ``"<network>.<name>"`` -> contiguous CPU tensor."""
    return {
        f"{net_name}.{k}": v.detach().cpu().contiguous()
        for net_name, net in networks.items()
        for k, v in net.state_dict().items()
    }


def optimizer_tensors(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split optimizer state into tensors (for safetensors) and JSON-able rest (param groups, scalars)."""
    tensors, meta = {}, {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, state in sd["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"{name}.{idx}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, meta


def save_checkpoint(
    folder: Path,
    networks: nn.ModuleDict,
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    extra_weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder atomically and point ``<parent>/latest`` at it.

    ``extra_weights`` (e.g. the EMA copy, keys ``ema.<network>.<name>``) go into ``model.safetensors``
    beside the networks' tensors; loading a network reads only its own prefix."""
    folder = Path(folder)
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{folder.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_file({**network_tensors(networks), **(extra_weights or {})}, str(tmp / MODEL_FILE))
        optim_tensors, optim_meta = optimizer_tensors(optimizers)
        save_file(optim_tensors, str(tmp / OPTIM_FILE))
        files = {}
        for fname in (MODEL_FILE, OPTIM_FILE):
            os.chmod(tmp / fname, umask_mode())  # safetensors creates its files 0600 whatever the umask
            atomic.fsync_path(tmp / fname)
            files[fname] = {"size": (tmp / fname).stat().st_size, "sha256": _sha256(tmp / fname)}
        full_state = {**state, "optimizers": optim_meta, "files": files}
        with open(tmp / STATE_FILE, "w", encoding="utf-8") as f:
            json.dump(full_state, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        atomic.fsync_path(tmp)
        if folder.exists():  # re-saving the same iteration: replace the old one only once the new is complete
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        atomic.fsync_path(parent)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        earlier = [p for p in list_checkpoints(parent) if p.name != folder.name]
        then = (
            "resume once it can be written: the previous checkpoint is intact"
            if earlier
            else "run the command again once it can be written (this run has no checkpoint yet)"
        )
        raise CheckpointError(os_error_line(exc, f"could not write checkpoint {folder}", then)) from None
    except BaseException:  # e.g. a second Ctrl-C mid-write: drop the partial copy, keep the old ones
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        atomic.write_text(parent / LATEST, folder.name + "\n")
    except OSError as exc:  # the checkpoint itself is complete: resume finds it without the pointer
        raise CheckpointError(
            os_error_line(
                exc,
                f"could not update {parent / LATEST}",
                f"resume once it can be written: checkpoint {folder.name} is complete",
            )
        ) from None
    return folder


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """Read ``state.json`` and check the recorded sizes and checksums; return the state."""
    folder = Path(folder)
    try:
        state = jsonfile.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a checkpoint folder (no {STATE_FILE})") from None
    except PermissionError as exc:  # not damage: the older checkpoints are no more readable
        raise UnreadableCheckpoint(
            os_error_line(exc, f"cannot read checkpoint {folder}", "ask its owner to make it readable")
        ) from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested past Python's limit
        raise CheckpointError(f"checkpoint {folder} has a damaged {STATE_FILE}: {exc}") from None
    files = state.get("files") if isinstance(state, dict) else None
    if not isinstance(files, dict) or not all(isinstance(r, dict) for r in files.values()):
        raise CheckpointError(f"checkpoint {folder} has a damaged {STATE_FILE}: not a gmdrit checkpoint state")
    # the fields every reader takes as they are (the others are checked where they are restored)
    iteration, config = state.get("iteration"), state.get("config")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or not 0 <= iteration < 10**10:
        raise CheckpointError(f"checkpoint {folder} has a damaged {STATE_FILE}: iteration {iteration!r}")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {folder} has a damaged {STATE_FILE}: its config is not a mapping")
    for fname, rec in files.items():
        path = folder / fname
        try:
            same = path.is_file() and path.stat().st_size == rec.get("size") and _sha256(path) == rec.get("sha256")
        except PermissionError as exc:
            raise UnreadableCheckpoint(
                os_error_line(exc, f"cannot read checkpoint {folder}", "ask its owner to make it readable")
            ) from None
        if not same:
            raise CheckpointError(f"checkpoint {folder} is damaged: {fname} does not match its recorded size/checksum")
    return state


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint this user may not read: not damage, so no fallback to an older one."""


def load_network_weights(folder_or_file: Path, networks: nn.ModuleDict, prefix: str = "") -> None:
    """Load ``model.safetensors`` into ``networks`` (strict: every tensor must match); ``prefix`` reads
    the copy stored under ``<prefix><network>.`` instead (``"ema."``: the EMA weights)."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MODEL_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from None
    if meta.get("quantized"):  # an int8 export (gmdrit export --int8)
        from ..inference.quantize import dequantize_tensors

        tensors = dequantize_tensors(tensors)
    # heads used only by training losses that an export left out (metadata "omitted": prefixes): zeros
    omitted = tuple(p for p in meta.get("omitted", "").split(",") if p)
    for net_name, net in networks.items():
        own = prefix + net_name + "."
        sd = {k[len(own) :]: v for k, v in tensors.items() if k.startswith(own)}
        for key, value in net.state_dict().items():
            if key not in sd and (f"{net_name}.{key}").startswith(omitted):
                sd[key] = torch.zeros_like(value)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"weights {path} do not fit network '{net_name}' of this config: {first}") from None


def load_optimizer_states(folder: Path, optimizers: dict[str, torch.optim.Optimizer], meta: dict) -> None:
    try:
        tensors = load_file(str(Path(folder) / OPTIM_FILE))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read optimizer state in {folder}: {exc}") from None
    for name, opt in optimizers.items():
        m = meta[name]
        state: dict[int, dict[str, Any]] = {}
        prefix = name + "."
        for key, value in tensors.items():
            if key.startswith(prefix):
                idx, tkey = key[len(prefix) :].split(".", 1)
                state.setdefault(int(idx), {})[tkey] = value
        for idx, scalars in m["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        opt.load_state_dict({"state": state, "param_groups": m["param_groups"]})
        _match_param_layouts(opt)


def _match_param_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each restored state tensor its parameter's memory layout (e.g. channels-last).

    Checkpoints store tensors contiguous; fresh Adam state is allocated like its parameter. Fused Adam
    walks parameter and state memory together, so a channels-last weight with an NCHW ``exp_avg``
    made a resumed run differ from a straight one.
    """
    for group in opt.param_groups:
        for param in group["params"]:
            for key, value in opt.state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    opt.state[param][key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint folders (renamed into place), newest iteration first."""
    if not Path(checkpoints_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(checkpoints_dir).iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def run_of_latest(path: Path | str) -> Path | None:
    """The run folder when ``path`` is a run's ``checkpoints/latest`` pointer (the file naming its newest
    checkpoint, which every command that takes a checkpoint accepts for the run), else None."""
    path = Path(path).expanduser()
    if path.name == LATEST and path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    return None


def find_checkpoint(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint of a run folder (or the given checkpoint folder) and its state.

    The newest complete checkpoint is tried first, whatever the ``latest`` pointer says: the pointer is updated
    after the checkpoint is renamed into place, so a kill or a full disk in between leaves it naming the one
    before (preferring it resumed that one and set the newer aside). A damaged checkpoint is skipped with a
    warning naming it and the one used instead. Returns None when the run has no checkpoint at all.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path, verify_checkpoint(path)
    ckpt_dir = path / "checkpoints"
    candidates = list_checkpoints(ckpt_dir)
    named = latest_name(ckpt_dir)
    if candidates and named and named != candidates[0].name and ckpt_dir / named in candidates:
        log.warning(
            "%s names %s, but %s is newer (the pointer was not updated after it was written); using the newest",
            ckpt_dir / LATEST,
            named,
            candidates[0].name,
        )
    damaged: list[tuple[Path, str]] = []
    for folder in candidates:
        try:
            state = verify_checkpoint(folder)
        except UnreadableCheckpoint:
            raise
        except CheckpointError as exc:
            damaged.append((folder, str(exc)))
            continue
        for _, why in damaged:
            log.warning("%s; using the previous valid checkpoint %s instead", why, folder)
        return folder, state
    if damaged:
        raise CheckpointError(
            f"every checkpoint in {ckpt_dir} is damaged ({damaged[0][1]}); nothing can be "
            f"loaded from it: restore the folder from a copy, or train a new run "
            f"(`gmdrit train --fresh`)"
        )
    return None


def prune_checkpoints(checkpoints_dir: Path, keep_last: int, keep_every: int) -> list[Path]:
    """Delete checkpoints beyond the newest ``keep_last``, except multiples of ``keep_every``."""
    removed = []
    for i, folder in enumerate(list_checkpoints(checkpoints_dir)):
        iteration = int(_NAME.match(folder.name).group(1))
        if i < keep_last or (keep_every and iteration % keep_every == 0):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for stale in Path(checkpoints_dir).glob(".tmp-*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    return removed
