"""The one way this package writes a file: whole or not at all.

Every file (checkpoint pointers, exports, translations, eval and benchmark reports, sample grids, the
run folder's config and metrics) is written under a temporary name beside its target, flushed to disk,
given the permissions a plain ``open`` would give it, and renamed over the target; the folder is synced
so the rename survives a power cut. A reader (or a process killed mid-write) sees the old file or the
whole new one, never a part, and a failure leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk (folders: so a rename inside survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse to sync a folder: the rename is still atomic
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then make it ``path`` atomically; returns ``path``.

    ``write`` gets the temporary path (``.NAME.tmp-PID`` in the same folder) and writes the whole file,
    e.g. ``lambda tmp: image.save(tmp, format="PNG")``. The temporary file is removed on any failure.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. a folder where the file goes: the error names the file, not our temporary
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: dict) -> Path:
    """``data`` as indented JSON (one trailing newline)."""
    return write_text(path, json.dumps(data, indent=1) + "\n")
