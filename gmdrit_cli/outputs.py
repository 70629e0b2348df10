"""The rule for every file and folder gmdrit writes (docs/files.md).

* Only ``train`` and ``resume`` write into a run's ``checkpoints/`` folder; every other command refuses an
  output inside it (or inside a checkpoint folder given directly).
* Nothing gmdrit did not make is replaced unless the user says so: ``export --force``, ``data edges
  --overwrite``, ``data download --force``; ``eval`` writes a new numbered folder instead of replacing an
  earlier one (:func:`numbered_folder`).
* Files and folders get the permissions a plain ``open`` / ``mkdir`` gives under the user's umask.
* An operating-system error (no permission, a file where a folder should be, a full disk) becomes one line
  that names the path and what to do (:func:`os_error_line`).

Standard library only: every command imports it before torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

# the names of checkpoint.py, repeated here so that this module does not import torch
_STATE_FILE, _MODEL_FILE, _LATEST = "state.json", "model.safetensors", "latest"
_CHECKPOINT_NAME = re.compile(r"^iter_\d+$")

_WHY = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOENT: "no such file or folder",
}
_SPACE = (errno.ENOSPC, errno.EDQUOT)
_RIGHTS = (errno.EACCES, errno.EPERM, errno.EROFS)


def os_error_line(exc: BaseException, doing: str, todo: str) -> str:
    """One line for an OS error: ``doing`` (e.g. "cannot write X"), why, and what to do: free space for a
    full disk, permissions for a refusal, else ``todo``. ``exc`` may also be a SafetensorError, whose text
    carries the OS error."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None and "No space left" in text:
        code = errno.ENOSPC
    why = _WHY.get(code) or getattr(exc, "strerror", None) or (text.splitlines() or [type(exc).__name__])[0]
    name = getattr(exc, "filename", None)
    where = f" ({name})" if name and str(name) not in doing else ""
    if code in _SPACE:
        hint = f"free some space, or {todo}"
    elif code in _RIGHTS:
        hint = f"check the permissions of that path, or {todo}"
    else:
        hint = todo
    return f"{doing}: {why}{where}; {hint}"


def _is_checkpoints_folder(folder: Path) -> bool:
    if folder.name != "checkpoints" or not folder.is_dir():
        return False
    return (
        (folder / _LATEST).is_file()
        or (folder.parent / "config.yaml").is_file()
        or any(_CHECKPOINT_NAME.match(p.name) for p in folder.iterdir())
    )


def checkpoint_area(path: str | Path) -> Path | None:
    """The run's ``checkpoints/`` folder or the checkpoint folder that ``path`` is or lies inside; None
    when it is neither (``path`` need not exist; a link to either, anywhere on the path, is followed)."""
    p = Path(path).expanduser().absolute()
    for start in (p, p.resolve()):
        for folder in (start, *start.parents):
            if (folder / _STATE_FILE).is_file() and (folder / _MODEL_FILE).exists():
                return folder
            if _is_checkpoints_folder(folder):
                return folder
    return None


def checkpoints_within(folder: str | Path) -> Path | None:
    """The first run's ``checkpoints/`` folder (or checkpoint folder) at or below ``folder``, None when there is
    none: what a command that replaces a whole folder (``data edges --overwrite``) must never delete. Links are not
    followed (removing a folder removes a link inside it, not what it points to)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir() or folder.is_symlink():
        return checkpoint_area(folder) if folder.is_dir() else None
    for root, dirs, _ in os.walk(folder):
        here = Path(root)
        if _is_checkpoints_folder(here) or ((here / _STATE_FILE).is_file() and (here / _MODEL_FILE).exists()):
            return here
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    return None


def refuse_checkpoint_area(path: str | Path, option: str) -> None:
    area = checkpoint_area(path)
    if area is not None:
        raise OutputError(
            f"{option} {path} is inside {area}, a run's checkpoints, which only `gmdrit train` and "
            f"`gmdrit resume` write; choose another {option}"
        )


def output_folder(folder: str | Path, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) for a command's outputs and check it can be written; raise
    :class:`OutputError` with one line when it is a file, inside a run's checkpoints, or not writable."""
    folder = Path(folder).expanduser()
    refuse_checkpoint_area(folder, option)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file, not a folder; choose another {option}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            os_error_line(exc, f"cannot create the folder {folder}", f"choose another {option}")
        ) from None
    if not _writable(folder):
        raise OutputError(
            f"cannot write into {folder}: permission denied; check its permissions, or choose another {option}"
        )
    return folder


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def refuse_replacing(path: str | Path, flag: str, option: str = "--out") -> None:
    """Refuse to replace an existing ``path`` (the user did not pass ``flag``)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise OutputError(
            f"{path} already exists and gmdrit does not replace it unless told to: pass {flag} to "
            f"replace it, or choose another {option}"
        )


def numbered_folder(folder: str | Path, names: tuple[str, ...] = ()) -> Path:
    """``folder`` when it is free, else the first free ``folder-2``, ``folder-3``, ...: free is absent or empty,
    or with ``names``, a folder that holds none of those files (a command's outputs: the other files stay); a
    folder another command is writing (its :data:`CLAIM_FILE`) is never free.
    A folder without a name of its own (``.``, ``/``) that is not free is an :class:`OutputError`."""
    folder = Path(folder)

    def free(p: Path) -> bool:
        if not p.exists():
            return True
        if not p.is_dir():
            return False
        return _free_inside(p, names) and not (p / CLAIM_FILE).exists()

    if free(folder):
        return folder
    if not folder.is_dir():
        raise OutputError(f"--out {folder} is a file, not a folder; choose another --out")
    named = Path(os.path.abspath(folder))  # '..' and 'runs/' get the name they stand for
    if not named.name:
        raise OutputError(
            f"--out {folder} already holds outputs and has no name to number a new folder after; "
            f"give a new folder, e.g. --out {folder.as_posix().rstrip('/')}/eval"
        )
    base = folder if folder.name and folder.name not in (".", "..") else named
    i = 2
    while not free(candidate := base.with_name(f"{base.name}-{i}")):
        i += 1
    return candidate


#: the hidden file a command keeps in the numbered folder it writes (:func:`claimed_folder`) from choosing it until
#: its last output: a second command started meanwhile (two evals of a run at once) takes the next number
CLAIM_FILE = ".gmdrit-writing"


def _free_inside(folder: Path, names: tuple[str, ...]) -> bool:
    """Whether ``folder`` (a folder) holds none of ``names`` (without names: nothing but a claim)."""
    if names:
        return not any((folder / n).exists() for n in names)
    return all(p.name == CLAIM_FILE for p in folder.iterdir())


@contextlib.contextmanager
def claimed_folder(folder: str | Path, names: tuple[str, ...] = (), option: str = "--out") -> Iterator[Path]:
    """:func:`numbered_folder` created (:func:`output_folder`) and held while the ``with`` block writes into it: a
    :data:`CLAIM_FILE` made there exclusively makes it taken for any other command, so two commands started at once
    never write into (and replace the results of) the same folder. On leaving, the claim goes, and so does the
    folder when this command made it and wrote nothing."""
    folder = Path(folder)
    for _ in range(1000):
        candidate = numbered_folder(folder, names)
        made = not candidate.exists()
        output_folder(candidate, option)
        claim = candidate / CLAIM_FILE
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:  # another command claimed it between the look and the claim: the next number
            continue
        except OSError as exc:
            raise OutputError(
                os_error_line(exc, f"cannot write into {candidate}", f"choose another {option}")
            ) from None
        if _free_inside(candidate, names):
            break
        claim.unlink(missing_ok=True)  # filled by a command that ended meanwhile: the next number
    else:
        raise OutputError(f"{option} {folder}: no free numbered folder beside it; choose another {option}")
    try:
        yield candidate
    finally:
        _release(claim, made)


@contextlib.contextmanager
def held_folder(folder: str | Path, option: str = "--out") -> Iterator[Path]:
    """``folder`` created (:func:`output_folder`) and held by an exclusively made :data:`CLAIM_FILE` while the
    ``with`` block writes into it; another command holding it is an :class:`OutputError` (no numbering: the user
    named this folder). Whatever the block checks inside (e.g. that the folder holds no model yet) holds until it
    ends, so two commands started at once never both write there. On leaving, the claim goes, and so does the
    folder when this command made it and it is empty."""
    folder = Path(folder).expanduser()
    made = not folder.exists()
    output_folder(folder, option)
    claim = folder / CLAIM_FILE
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        raise OutputError(
            f"{option} {folder} is being written by another gmdrit command (it holds {CLAIM_FILE}); wait for it to "
            f"end or choose another {option} (if none is running, delete {claim})"
        ) from None
    except OSError as exc:
        raise OutputError(os_error_line(exc, f"cannot write into {folder}", f"choose another {option}")) from None
    try:
        yield folder
    finally:
        _release(claim, made)


def _release(claim: Path, made: bool) -> None:
    """Remove a command's :data:`CLAIM_FILE`, and its folder when the command ``made`` it and wrote nothing."""
    claim.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):
            claim.parent.rmdir()  # only when empty


def umask_mode(folder: bool = False) -> int:
    """The mode a plain ``open`` (``folder``: ``mkdir``) gives under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def temporary_folder(parent: Path, prefix: str) -> Path:
    """A new hidden folder in ``parent`` to build an output in before it is renamed into place, with the
    permissions of a plain ``mkdir`` (``tempfile.mkdtemp`` makes it 0700, which the rename would keep)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, umask_mode(folder=True))
    return folder


def latest_name(checkpoints_dir: Path) -> str:
    """The checkpoint name the run's ``latest`` pointer holds, "" without one. A damaged pointer (garbage,
    not UTF-8, a huge file) gives a name that matches no checkpoint rather than an error: it only points."""
    pointer = Path(checkpoints_dir) / "latest"
    if not pointer.is_file():
        return ""
    try:
        with open(pointer, "rb") as f:
            raw = f.read(256)  # a checkpoint's name is 12 characters
    except OSError:
        return ""
    return raw.decode("utf-8", "replace").strip()
