"""The public CycleGAN and pix2pix datasets: a registry, and a resumable, checked download that unpacks
an archive into ``<to>/<name>`` in the layout `gmdrit train` reads (``trainA``, ``trainB``, ...).

Standard library only. A download is streamed into ``<to>/.<name>.part`` (continued with an HTTP
``Range`` request when that file exists), renamed to ``<to>/<name>.zip`` or ``.tar.gz`` when complete,
checked (size, integrity, member paths, expected folders and image counts), unpacked into a temporary
folder next to the destination and renamed into place, so ``<to>/<name>`` is either absent or complete.
"""

from __future__ import annotations

import difflib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import GmdritError
from ..limits import finite, whole_number
from ..outputs import checkpoints_within, os_error_line, refuse_checkpoint_area, temporary_folder


class DownloadError(GmdritError):
    """A dataset cannot be found, downloaded, checked or unpacked."""


Progress = Callable[[str, int, Optional[int]], None]
"""``progress(stage, done, total)``: stage is 'download' (bytes), 'check' or 'unpack' (archive members);
``total`` is None when unknown."""

CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
PAIRED_SUFFIX = "-paired"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
USER_AGENT = "gmdrit-data-download"
_IGNORED_TOP = {"__MACOSX"}  # resource-fork folders that macOS zip tools add; never part of a dataset


@dataclass(frozen=True)
class DatasetSpec:
    """One downloadable dataset: local name, kind ('unpaired' or 'paired'), archive URL and format ('zip'
    or 'tar.gz'), the folders it must contain once unpacked, images per folder and archive size in bytes
    where known (None: only the folder's presence is checked)."""

    name: str
    kind: str
    url: str
    archive: str
    folders: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict, hash=False)
    size: Optional[int] = None

    @property
    def archive_name(self) -> str:
        return f"{self.name}.{self.archive}"


def _cyclegan(name: str, counts: Optional[dict[str, int]] = None) -> DatasetSpec:
    return DatasetSpec(
        name, "unpaired", CYCLEGAN_URL.format(name=name), "zip", ("trainA", "trainB", "testA", "testB"), counts or {}
    )


def _pix2pix(name: str, local_name: Optional[str] = None) -> DatasetSpec:
    return DatasetSpec(local_name or name, "paired", PIX2PIX_URL.format(name=name), "tar.gz", ("train", "val"))


_UNPAIRED = [
    _cyclegan("apple2orange", {"trainA": 995, "trainB": 1019, "testA": 266, "testB": 248}),
    _cyclegan("horse2zebra", {"trainA": 1067, "trainB": 1334, "testA": 120, "testB": 140}),
    *(
        _cyclegan(n)
        for n in (
            "summer2winter_yosemite",
            "monet2photo",
            "cezanne2photo",
            "ukiyoe2photo",
            "vangogh2photo",
            "iphone2dslr_flower",
            "maps",
            "cityscapes",
            "facades",
        )
    ),
]
_unpaired_names = {s.name for s in _UNPAIRED}
# A pix2pix set whose name is also a CycleGAN set is called <name>-paired; the plain name is the CycleGAN one.
_PAIRED = [
    _pix2pix(n, n + PAIRED_SUFFIX if n in _unpaired_names else None)
    for n in ("edges2shoes", "edges2handbags", "facades", "maps", "night2day", "cityscapes")
]
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _UNPAIRED + _PAIRED}


def find_dataset(name: str, registry: Optional[dict[str, DatasetSpec]] = None) -> DatasetSpec:
    """The registry entry called ``name``; an unknown name is an error that suggests the closest one."""
    registry = DATASETS if registry is None else registry
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DownloadError(f"unknown dataset '{name}'{hint}; `gmdrit data list` shows the names")


def is_known_dataset(name: str, kind: Optional[str] = None) -> bool:
    """Whether ``name`` is a dataset `gmdrit data download` can fetch (of ``kind``, when given)."""
    return name in DATASETS and kind in (None, DATASETS[name].kind)


# -- what is on disk ------------------------------------------------------------------------------


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def missing_parts(spec: DatasetSpec, folder: Path) -> list[str]:
    """What ``folder`` lacks to be the unpacked ``spec``: missing folders and wrong image counts."""
    problems = []
    for sub in spec.folders:
        path = folder / sub
        if path.exists() and not path.is_dir():
            problems.append(f"{sub} is a file, not a folder")
        elif not path.is_dir():
            problems.append(f"no {sub}/")
        elif sub in spec.counts and (n := _count_images(path)) != spec.counts[sub]:
            problems.append(f"{sub}/ has {n} images instead of {spec.counts[sub]}")
    return problems


def dataset_state(spec: DatasetSpec, to: Path) -> str:
    """'present', 'incomplete' (the folder exists but lacks something), 'partial download' (a .part file
    waits to be resumed) or 'absent'."""
    folder = Path(to) / spec.name
    if folder.is_dir():
        try:
            return "incomplete" if missing_parts(spec, folder) else "present"
        except PermissionError:  # e.g. another user's folder: say so instead of failing the whole list
            return "unreadable"
    return "partial download" if (Path(to) / f".{spec.name}.part").is_file() else "absent"


def list_datasets(to: Path, registry: Optional[dict[str, DatasetSpec]] = None) -> list[tuple[DatasetSpec, str]]:
    """Every registry entry with its state under ``to`` (see :func:`dataset_state`)."""
    registry = DATASETS if registry is None else registry
    if Path(to).exists() and not Path(to).is_dir():  # else every dataset would be listed as absent, silently
        raise DownloadError(f"--to {to} is a file, not a folder; pass the folder that holds the datasets")
    return [(spec, dataset_state(spec, Path(to))) for spec in registry.values()]


# -- downloading ----------------------------------------------------------------------------------


def _content_range(header: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """(first byte, full size) of a ``Content-Range: bytes a-b/n`` or ``bytes */n`` header."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total and total != "*" else None)


def fetch(
    url: str,
    part: Path,
    *,
    manual_path: Path,
    progress: Optional[Progress] = None,
    timeout: float = 30.0,
    chunk_size: int = 1 << 16,
    max_bytes: Optional[int] = None,
) -> tuple[int, int]:
    """Download ``url`` into ``part``, continuing an existing ``part`` with a Range request; returns the
    file's size and the byte the transfer continued from (0: from the start). A broken-off transfer keeps
    ``part`` and raises; ``manual_path`` is where the error tells the user to put a file fetched by hand.
    A file announced or sent past ``max_bytes`` (default :data:`~gmdrit_cli.limits.MAX_DOWNLOAD_BYTES`) or past
    its announced size is stopped there and removed: a stream or a device file would otherwise fill the disk."""
    from .. import limits

    max_bytes = limits.MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
    start = part.stat().st_size if part.is_file() else 0
    for _ in range(3):  # a refused or ignored Range restarts from zero; that needs at most two retries
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={start}-"} if start else {})}
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and start:
                # the part is as long as the file (complete) or longer (a different file): keep or restart
                if _content_range(exc.headers.get("Content-Range"))[1] == start:
                    return start, start
                part.unlink()
                start = 0
                continue
            if exc.code == 404:
                raise DownloadError(
                    f"{url} answered 404 Not Found; check the URL, pass --url with a mirror, "
                    f"or download the file by hand to {manual_path} and run again"
                ) from None
            if 300 <= exc.code < 400:  # urllib's text for a redirect loop spans lines: name the loop instead
                raise DownloadError(
                    f"{url} redirects in a loop or too many times (HTTP {exc.code}); pass --url with the archive's "
                    f"own address or a mirror, or download the file by hand to {manual_path}"
                ) from None
            why = " ".join(str(exc.reason).split())  # a server's reason phrase is shown on one line
            raise DownloadError(
                f"{url} answered HTTP {exc.code} {why}; try again later, pass --url "
                f"with a mirror, or download the file by hand to {manual_path}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
            if url.lower().startswith("file:"):  # a local path: the network is not the problem
                raise DownloadError(
                    f"cannot read {url} ({reason}); give --url the archive file itself, or put the archive "
                    f"at {manual_path} and run again"
                ) from None
            raise DownloadError(
                f"cannot reach {url} ({reason}); check the network, pass --url with a mirror, "
                f"or download the file by hand to {manual_path} and run again"
            ) from None
        with response:
            first, total = _content_range(response.headers.get("Content-Range"))
            if start and (response.status != 206 or first != start):
                if response.status == 206:  # a range we did not ask for: cannot be appended
                    part.unlink()
                    start = 0
                    continue
                start = 0  # the server ignored Range and sends the whole file: start over
            if not start:
                length = response.headers.get("Content-Length")
                total = whole_number(length)
            if total is not None and total > max_bytes:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url} announces {total:,} bytes, more than any dataset archive ({max_bytes:,} bytes at "
                    f"most: a file past this would only fill the disk); check the URL"
                )
            done = start
            with open(part, "ab" if start else "wb") as out:
                while True:
                    try:
                        chunk = response.read(chunk_size)
                    except (http.client.HTTPException, OSError) as exc:  # reset, timeout, TLS error mid-body
                        raise DownloadError(
                            f"the download from {url} broke off after {done} bytes "
                            f"({exc or type(exc).__name__}); {part} is kept: run the same "
                            f"command again to resume"
                        ) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if done > (max_bytes if total is None else total):  # sent past its size, or endless
                        break
                    if progress:
                        progress("download", done, total)
        if total is not None and done < total:
            raise DownloadError(
                f"the download from {url} stopped at {done} of {total} bytes; {part} is kept: "
                f"run the same command again to resume"
            )
        if total is not None and done > total:
            part.unlink()
            raise DownloadError(
                f"{url} sent more than the {total} bytes it announced; the partial file was removed: check the "
                f"URL (it is not an archive of a fixed size) and run again"
            )
        if done > max_bytes:
            part.unlink()
            raise DownloadError(
                f"{url} sent more than {max_bytes:,} bytes, more than any dataset archive (a stream or a device "
                f"file?); the partial file was removed: check the URL"
            )
        return done, start
    raise DownloadError(f"{url} does not answer Range requests consistently; remove {part} and run again")


# -- checking and unpacking -----------------------------------------------------------------------


@dataclass
class _Member:
    """One archive entry: its name in the archive, its path inside the dataset folder, and whether it is
    a folder."""

    name: str
    parts: tuple[str, ...]
    is_dir: bool


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member; absolute paths and '..' are refused (path traversal)."""
    text = name.replace("\\", "/")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if text.startswith("/") or re.match(r"[A-Za-z]:", text) or ".." in parts:
        raise ValueError(f"unsafe member path '{name}' (it points outside the dataset folder)")
    return parts


def _read_members(path: Path, fmt: str, progress: Optional[Progress]) -> list[_Member]:
    """Read every member of the archive (so CRC and truncation errors surface) and list them."""
    members = []
    if fmt == "zip":
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for i, info in enumerate(infos, 1):
                members.append(_Member(info.filename, _safe_parts(info.filename), info.is_dir()))
                if not info.is_dir():
                    with archive.open(info) as stream:  # raises BadZipFile on a CRC mismatch
                        while stream.read(1 << 20):
                            pass
                if progress:
                    progress("check", i, len(infos))
        return members
    with tarfile.open(path, "r:*") as archive:
        for i, info in enumerate(archive, 1):
            parts = _safe_parts(info.name)
            if not (info.isfile() or info.isdir()):
                raise ValueError(f"member '{info.name}' is a link or special file")
            members.append(_Member(info.name, parts, info.isdir()))
            if info.isfile():
                stream = archive.extractfile(info)
                while stream is not None and stream.read(1 << 20):
                    pass
            if progress:
                progress("check", i, None)
    return members


def _strip_top(members: list[_Member], spec: DatasetSpec) -> list[_Member]:
    """Members relative to the dataset folder: drops a single top folder (``apple2orange/trainA/...``),
    keeps archives without one, and leaves out macOS resource forks."""
    members = [m for m in members if m.parts and m.parts[0] not in _IGNORED_TOP]
    tops = {m.parts[0] for m in members}
    if len(tops) == 1 and not tops & set(spec.folders):
        members = [_Member(m.name, m.parts[1:], m.is_dir) for m in members if len(m.parts) > 1]
    return members


def check_archive(path: Path, spec: DatasetSpec, progress: Optional[Progress] = None) -> list[_Member]:
    """Check an archive against ``spec`` before anything is unpacked: known size, integrity, member paths,
    the expected folders and image counts. Returns its members relative to the dataset folder; raises
    ``ValueError`` with the reason."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ValueError(f"it has {size} bytes instead of {spec.size}")
    try:
        members = _strip_top(_read_members(path, spec.archive, progress), spec)
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, RuntimeError) as exc:
        # OSError covers gzip.BadGzipFile; RuntimeError is zipfile's answer to an encrypted member
        raise ValueError(f"it is not a readable {spec.archive} archive ({exc})") from None
    present = {m.parts[0] for m in members}
    missing = [f for f in spec.folders if f not in present]
    if missing:
        found = sorted(present)[:8] + (["..."] if len(present) > 8 else [])
        raise ValueError(f"it has no {', '.join(missing)} folder (it has: {', '.join(found) or 'nothing'})")
    for folder, expected in spec.counts.items():
        n = sum(
            1
            for m in members
            if not m.is_dir
            and len(m.parts) == 2
            and m.parts[0] == folder
            and Path(m.parts[1]).suffix.lower() in IMAGE_SUFFIXES
        )
        if n != expected:
            raise ValueError(f"its {folder}/ has {n} images instead of {expected}")
    return members


def _extract(path: Path, fmt: str, members: list[_Member], target: Path, progress: Optional[Progress]) -> None:
    """Write the checked ``members`` under ``target``, one by one, at their stripped paths."""
    by_name = {m.name: m for m in members}
    done = 0

    def write(member: _Member, stream) -> None:
        nonlocal done
        dest = target.joinpath(*member.parts)
        if member.is_dir:
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
        done += 1
        if progress:
            progress("unpack", done, len(members))

    if fmt == "zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if (m := by_name.get(info.filename)) and m.parts:
                    with archive.open(info) as stream:
                        write(m, stream)
        return
    with tarfile.open(path, "r:*") as archive:
        for info in archive:
            if (m := by_name.get(info.name)) and m.parts:
                write(m, archive.extractfile(info) if info.isfile() else None)


def _install(source: Path, dest: Path) -> None:
    """Put the unpacked ``source`` at ``dest`` with renames only; an existing ``dest`` goes last."""
    if not dest.exists():
        os.replace(source, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.replace(dest, old)
    os.replace(source, dest)
    shutil.rmtree(old, ignore_errors=True)


# -- the command ----------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host or a file:// URL with a path; else one line saying what
    --url takes."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError as exc:
        raise DownloadError(
            f"--url {url!r} is not a valid URL ({exc}); give the http(s) address of an archive"
        ) from None
    if not (parts.scheme in ("http", "https") and parts.netloc or parts.scheme == "file" and parts.path):
        raise DownloadError(
            f"--url {url!r} is not an http(s) or file:// URL; give the address of an archive, e.g. "
            f"https://host/path/NAME.zip (leave --url out for the official one)"
        )
    if parts.scheme == "file":
        return url.strip()
    # an HTTP request line is ASCII: a mirror's path with 'é' or a space is sent percent-encoded (urllib
    # raised UnicodeEncodeError on it), its host name in IDNA
    try:
        (parts.hostname or "").encode("idna")
        path = urllib.parse.quote(parts.path, safe="/%:@!$&'()*+,;=~")
        query = urllib.parse.quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    except UnicodeError as exc:
        raise DownloadError(
            f"--url {url!r} is not a valid URL ({exc}); give the http(s) address of an archive"
        ) from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def check_timeout(timeout: float) -> float:
    return finite(timeout, "--timeout", high=3600, why="seconds to wait for the server")


@dataclass
class DownloadResult:
    """What :func:`download_dataset` did: the dataset, the URL, its folder, whether it was already there,
    the bytes fetched by this call, the bytes that were already in the .part file, the kept archive (or
    None) and the images per expected folder."""

    spec: DatasetSpec
    url: str
    path: Path
    already_present: bool
    downloaded: int = 0
    resumed_from: int = 0
    archive: Optional[Path] = None
    counts: dict[str, int] = field(default_factory=dict)


def _counts(spec: DatasetSpec, folder: Path) -> dict[str, int]:
    return {f: _count_images(folder / f) for f in spec.folders if (folder / f).is_dir()}


def download_dataset(
    name: str | DatasetSpec,
    to: Path = Path("data"),
    *,
    url: Optional[str] = None,
    force: bool = False,
    keep_archive: bool = False,
    progress: Optional[Progress] = None,
    timeout: float = 30.0,
    registry: Optional[dict[str, DatasetSpec]] = None,
) -> DownloadResult:
    """Download, check and unpack a dataset into ``to/<name>``; a complete folder there is left alone
    unless ``force``. ``url`` replaces the registry's URL (a mirror); an archive already at
    ``to/<name>.<format>`` (kept, or fetched by hand) is used without downloading."""
    spec = name if isinstance(name, DatasetSpec) else find_dataset(name, registry)
    to = Path(to)
    source = spec.url if url is None else check_url(url)
    check_timeout(timeout)
    dest, part, archive = to / spec.name, to / f".{spec.name}.part", to / spec.archive_name
    if to.exists() and not to.is_dir():
        raise DownloadError(f"--to {to} is a file, not a folder; pass the folder that holds the datasets")
    refuse_checkpoint_area(to, "--to")
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest} exists and is not a folder; move it away or pass another --to")
    problems = missing_parts(spec, dest) if dest.is_dir() else []
    held = checkpoints_within(dest) if dest.is_dir() and (force or problems) else None
    if held is not None:  # --force replaces the whole folder: never a run's checkpoints
        raise DownloadError(
            f"{dest} holds a run's checkpoints ({held}), which a fresh download would delete and only "
            f"`gmdrit train` and `gmdrit resume` write; pass another --to"
        )
    if dest.is_dir() and not force:
        if not problems:
            return DownloadResult(spec, source, dest, True, counts=_counts(spec, dest))
        raise DownloadError(
            f"{dest} exists but is incomplete ({'; '.join(problems)}); pass --force to replace it with a fresh download"
        )
    new_folders = [f for f in [to, *to.parents] if not f.exists()]  # what the mkdir below creates
    try:
        return _download_into(spec, to, source, dest, part, archive, force, keep_archive, progress, timeout)
    except BaseException:
        for folder in new_folders:  # innermost first: the folders this call made and left empty
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def _download_into(spec, to, source, dest, part, archive, force, keep_archive, progress, timeout) -> DownloadResult:
    """:func:`download_dataset` once its arguments are checked: fetch, check, unpack into ``dest``."""
    try:
        to.mkdir(parents=True, exist_ok=True)
        if force:
            for stale in (part, archive):
                stale.unlink(missing_ok=True)
        resumed_from = downloaded = 0
        found = archive.is_file()  # kept from an earlier download, or put there by the user: not ours to delete
        if not found:
            size, resumed_from = fetch(source, part, manual_path=archive, progress=progress, timeout=timeout)
            downloaded = size - resumed_from
            os.replace(part, archive)
        try:
            members = check_archive(archive, spec, progress)
        except ValueError as exc:
            if found:
                raise DownloadError(
                    f"{archive} was already there (nothing was downloaded) and is not {spec.name}: "
                    f"{exc}; it is left as it was: move it away and run again to download "
                    f"{spec.name}"
                ) from None
            archive.unlink(missing_ok=True)
            raise DownloadError(
                f"the archive from {source} is damaged or not {spec.name}: {exc}; it was removed "
                f"({archive}) and nothing was unpacked: run the command again, or pass --url "
                f"with another mirror"
            ) from None
        unpacked = temporary_folder(to, f".{spec.name}.unpack-")
        try:
            _extract(archive, spec.archive, members, unpacked, progress)
            _install(unpacked, dest)
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)
        if not keep_archive and not found:  # an archive that was already there is not ours to delete
            archive.unlink(missing_ok=True)
    except OSError as exc:  # disk full, no permission: the network errors were handled in fetch
        raise DownloadError(os_error_line(exc, f"cannot write the dataset under {to}", "pass another --to")) from None
    return DownloadResult(
        spec,
        source,
        dest,
        False,
        downloaded,
        resumed_from,
        archive if keep_archive or found else None,
        _counts(spec, dest),
    )
