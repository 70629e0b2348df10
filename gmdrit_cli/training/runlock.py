"""One writer per run folder: ``RUN/.lock`` names the process writing it.

The lock is a small JSON file (host, PID, start time, a random token) created with ``O_CREAT | O_EXCL``,
so of two processes starting at once exactly one gets it. Its holder refreshes the file's modification
time every :data:`HEARTBEAT_S` seconds from a background thread. A lock is *stale*, and taken over with
a note, when

* its holder ran on this host and that PID no longer runs (or now belongs to a younger process), or
* its holder ran on another host (a shared folder, e.g. a Drive folder used from two Colab sessions)
  and its heartbeat is older than :data:`STALE_AFTER_S` seconds.

Otherwise a second writer is refused with one line naming the holder. Taking over renames the stale lock
away first (a rename succeeds for one process only), so two processes cannot both take it over.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

from .. import jsonfile
from ..errors import CheckpointError
from ..outputs import os_error_line

log = logging.getLogger("gmdrit")

LOCK_FILE = ".lock"
#: seconds between two refreshes of the lock's modification time by its holder
HEARTBEAT_S = 30.0
#: a lock of another host whose heartbeat is older than this is stale
STALE_AFTER_S = 300.0
#: a lock file that names no process after this many seconds is damaged (its writer fills it at once)
FILL_S = 0.5


class RunFolderBusy(CheckpointError):
    """Another live process is writing this run folder."""


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` in seconds since the epoch (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(pid: int, started: float) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``started`` (not a reused PID)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a PID no process can have: a damaged lock
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    begun = _process_start(pid)
    return begun is None or begun <= started + 5.0  # a process started after the lock cannot hold it


def _describe(holder: dict) -> str:
    since = datetime.fromtimestamp(holder["started"]).isoformat(sep=" ", timespec="seconds")
    return f"PID {holder['pid']} on host {holder['host']} since {since}"


def _holder(text: str) -> dict | None:
    """The lock's content when it is what :class:`RunLock` writes (host, PID, start time, token), else None."""
    try:
        holder = jsonfile.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(holder, dict):
        return None
    host, pid, started = holder.get("host"), holder.get("pid"), holder.get("started")
    if not isinstance(host, str) or type(pid) is not int or pid <= 0 or type(started) not in (int, float):
        return None
    try:
        datetime.fromtimestamp(started)
    except (ValueError, OverflowError, OSError):
        return None
    return holder


class RunLock:
    """The lock of run folder ``run_dir``: :meth:`acquire`, then :meth:`release` (or use ``with``)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.token = secrets.token_hex(8)
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "token": self.token}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask decides
        except FileExistsError:
            return False
        except OSError as exc:
            raise CheckpointError(
                os_error_line(exc, f"cannot write the run folder {self.path.parent}", "choose another run folder")
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.info, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk: an empty lock left behind would refuse every later command
            self.path.unlink(missing_ok=True)
            raise CheckpointError(
                os_error_line(exc, f"cannot write the run folder {self.path.parent}", "choose another run folder")
            ) from None
        return True

    def _read(self) -> dict | None:
        """The holder named by the lock file; None when there is none; {} when the file names nobody
        (being written this instant, or damaged)."""
        try:
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            return {}
        except OSError as exc:
            raise CheckpointError(
                os_error_line(
                    exc,
                    f"cannot read the lock {self.path} of the run folder",
                    "ask its owner, or use another run folder",
                )
            ) from None
        return _holder(text) or {}

    def _damaged(self) -> bool:
        """A lock that names nobody and is older than a writer needs to fill it: damage, not a holder."""
        try:
            return time.time() - self.path.stat().st_mtime > FILL_S
        except FileNotFoundError:
            return False

    def _stale(self, holder: dict) -> bool:
        if holder["host"] == socket.gethostname():
            return not _alive(holder["pid"], float(holder["started"]))
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > STALE_AFTER_S

    def acquire(self) -> None:
        """Take the lock, taking over a stale one with a warning; :class:`RunFolderBusy` if it is held."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(
                os_error_line(exc, f"cannot create the run folder {self.path.parent}", "choose another run folder")
            ) from None
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return
            holder = self._read()
            if holder is None:
                continue  # released meanwhile: try again
            if not holder:
                if not self._damaged():
                    time.sleep(FILL_S)  # its writer is filling it in
                    continue
                raise CheckpointError(
                    f"run folder {self.path.parent}: its lock file {self.path} is damaged (it "
                    f"names no process); if no gmdrit command is writing this folder, delete "
                    f"that file and run again"
                )
            if not self._stale(holder):
                raise RunFolderBusy(
                    f"run folder {self.path.parent} is being written by {_describe(holder)}; "
                    f"wait for it to finish or stop it first (one writer per run folder)"
                )
            aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.token}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                continue  # another process took it over first
            aside.unlink(missing_ok=True)
            log.warning(
                "taking over the lock of run folder %s left by %s, which no longer runs",
                self.path.parent,
                _describe(holder),
            )
        raise RunFolderBusy(
            f"run folder {self.path.parent}: could not take its lock {self.path}; another process keeps taking it"
        )

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    os.utime(self.path)
                except OSError:
                    pass  # a moment without a shared folder; the next beat tries again

        self._stop.clear()
        self._thread = threading.Thread(target=beat, name="gmdrit-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Remove the lock if it is still this process's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        holder = self._read()
        if holder and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def refuse_if_busy(run_dir: Path) -> None:
    """:class:`RunFolderBusy` when a live process holds the lock of ``run_dir``: for a command that failed to read
    a checkpoint before taking the lock itself (the holder had just pruned it), so that it names the writer
    instead of a missing file."""
    lock = RunLock(run_dir)
    try:
        holder = lock._read()
    except CheckpointError:
        return
    if holder and not lock._stale(holder):
        raise RunFolderBusy(
            f"run folder {lock.path.parent} is being written by {_describe(holder)}; "
            f"wait for it to finish or stop it first (one writer per run folder)"
        )
