"""A dataset on a slow mount (a Google Drive folder in Colab) copied once to local disk and reused.

Training reads every image thousands of times; from a Drive mount each read is a network round trip. The
cache is ``CACHE/<name of the dataset folder>``, a full copy of the dataset folder, plus ``CACHE/<name>.json``
saying what was copied: the source folder, its file count and its total size. A later run reuses the copy while
the source still has that many files of that total size and the copy too; otherwise it copies again. A copy is
written into a temporary folder and renamed into place, so an interrupted copy is never taken for a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, jsonfile
from ..errors import DataError
from ..outputs import checkpoint_area
from .unpaired import resolve_root


@dataclass(frozen=True)
class CacheResult:
    path: Path  # the local copy: train from here
    source: Path
    files: int
    size: int  # bytes
    copied: bool  # False: a complete copy was already there


def tree_summary(root: Path) -> tuple[int, int]:
    """(regular files, total bytes) under ``root``, recursively; symbolic links are followed as files."""
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                size += os.stat(os.path.join(folder, name)).st_size
            except OSError:  # vanished or a dangling link: not part of the data
                continue
            files += 1
    return files, size


def _is_manifest(recorded) -> bool:
    return isinstance(recorded, dict) and set(recorded) == {"source", "files", "bytes"}


def _refuse_what_is_not_a_copy(target: Path, manifest: Path, recorded) -> None:
    """A copy is replaced only when its manifest says this module made it: a folder ``TO/<name>`` or a file
    ``TO/<name>.json`` of the user's own (e.g. ``--to ~`` beside a folder of the same name) is left alone."""
    if (manifest.exists() or manifest.is_symlink()) and not _is_manifest(recorded):
        raise DataError(
            f"{manifest} is in the way and is not a gmdrit data cache record; move it away or cache elsewhere"
        )
    if (target.exists() or target.is_symlink()) and not _is_manifest(recorded):
        if not target.is_dir() or any(target.iterdir()):
            raise DataError(
                f"{target} already exists and is not a copy made by gmdrit data cache; gmdrit does "
                f"not replace it: move it away or cache elsewhere"
            )


def cache_dataset(
    source: str | Path, cache_dir: str | Path, progress: Callable[[int, int], None] | None = None
) -> CacheResult:
    """The local copy of dataset folder ``source`` under ``cache_dir``, copied now unless a complete copy of the
    same source (file count and size) is there. ``progress(files copied, files)`` during a copy."""
    source = resolve_root(source).resolve()
    if source.exists() and not source.is_dir():
        raise DataError(f"data folder '{source}' is a file, not a folder; nothing to cache (check data.root)")
    if not source.is_dir():
        raise DataError(f"data folder '{source}' does not exist; nothing to cache (check data.root)")
    cache_dir = Path(cache_dir).expanduser().resolve()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise DataError(f"the cache folder {cache_dir} is a file, not a folder; cache elsewhere")
    area = checkpoint_area(cache_dir)
    if area is not None:
        raise DataError(
            f"the cache folder {cache_dir} is inside {area}, a run's checkpoints, which only `gmdrit "
            f"train` and `gmdrit resume` write; cache elsewhere"
        )
    target, manifest = cache_dir / source.name, cache_dir / f"{source.name}.json"
    if target == source:
        raise DataError(
            f"the copy would go to {target}, the data folder itself (--to is the folder that holds {source.name}); "
            f"cache elsewhere"
        )
    if source in target.parents:
        raise DataError(f"the cache folder {cache_dir} lies inside the data folder {source}; cache elsewhere")
    if target in source.parents:
        raise DataError(
            f"the copy {target} would replace a folder that holds the data folder {source}; cache elsewhere"
        )
    files, size = tree_summary(source)
    if files == 0:
        raise DataError(f"data folder '{source}' holds no files; nothing to cache (check data.root)")
    want = {"source": str(source), "files": files, "bytes": size}
    try:
        recorded = jsonfile.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        recorded = None
    _refuse_what_is_not_a_copy(target, manifest, recorded)
    if recorded == want and target.is_dir() and tree_summary(target) == (files, size):
        return CacheResult(target, source, files, size, copied=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".{source.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    done = 0

    def copy(src: str, dst: str) -> None:
        nonlocal done
        shutil.copy2(src, dst)
        done += 1
        if progress is not None:
            progress(done, files)

    try:  # the partial copy goes on any exit but the rename, Ctrl-C and SIGTERM (a SystemExit) included
        try:
            shutil.copytree(source, partial, copy_function=copy)
        except shutil.Error as exc:  # per-file failures, collected: name the first one
            first = exc.args[0][0] if exc.args and isinstance(exc.args[0], list) and exc.args[0] else None
            what = f"{first[0]}: {first[2]}" if isinstance(first, tuple) and len(first) == 3 else str(exc)
            more = len(exc.args[0]) - 1 if first else 0
            raise DataError(
                f"copying {source} to {cache_dir} failed at {what}{f' (and {more} more)' if more > 0 else ''}; "
                f"move what is not a plain file or folder out of the data folder, or unset speed.data_cache"
            ) from None
        except OSError as exc:
            raise DataError(
                f"copying {source} to {cache_dir} failed ({exc}); free some disk space or unset speed.data_cache"
            ) from None
        if tree_summary(partial) != (files, size):
            raise DataError(f"{source} changed while it was copied to {cache_dir}; run again once it is complete")
        manifest.unlink(missing_ok=True)  # no manifest while the old copy is replaced
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    atomic.write_text(manifest, json.dumps(want, indent=1) + "\n")
    return CacheResult(target, source, files, size, copied=True)
