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

from .errors import CheckpointError

log = logging.getLogger("gmdrit")

LOCK_FILE = ".lock"
#: seconds between two refreshes of the lock's modification time by its holder
HEARTBEAT_S = 30.0
#: a lock of another host whose heartbeat is older than this is stale
STALE_AFTER_S = 300.0


class RunFolderBusy(CheckpointError):
    """Another live process is writing this run folder."""


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` in seconds since the epoch (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(pid: int, started: float) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``started`` (not a reused PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    begun = _process_start(pid)
    return begun is None or begun <= started + 5.0  # a process started after the lock cannot hold it


def _describe(holder: dict) -> str:
    since = datetime.fromtimestamp(float(holder.get("started", 0))).isoformat(sep=" ", timespec="seconds")
    return f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')} since {since}"


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
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.info, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or damaged: judged by its age alone

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not _alive(holder["pid"], float(holder.get("started", 0)))
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > STALE_AFTER_S

    def acquire(self) -> None:
        """Take the lock, taking over a stale one with a warning; :class:`RunFolderBusy` if it is held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return
            holder = self._read()
            if holder is None:
                continue  # released meanwhile: try again
            if not self._stale(holder):
                raise RunFolderBusy(f"run folder {self.path.parent} is being written by {_describe(holder)}; "
                                    f"wait for it to finish or stop it first (one writer per run folder)")
            aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.token}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                continue  # another process took it over first
            aside.unlink(missing_ok=True)
            log.warning("taking over the lock of run folder %s left by %s, which no longer runs",
                        self.path.parent, _describe(holder))
        raise RunFolderBusy(f"run folder {self.path.parent}: could not take its lock {self.path}; "
                            f"another process keeps taking it")

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
