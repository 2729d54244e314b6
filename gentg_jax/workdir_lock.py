"""The one-writer lock of a workdir (`WorkdirLock`).

`writer.lock` in the workdir, created atomically (a hard link of a complete file, else
O_CREAT|O_EXCL), holding the host, pid, process start time and start date of its holder. A
second writer is refused with the holder named; a lock left by a process that no longer runs on
this host (kill -9, power loss) is taken over with a warning; a lock from another host is never
taken over (delete the file once that run is gone).
"""

import atexit
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import secrets
import socket
import sys
import tempfile
import time

from absl import logging

LOCK_FILE = "writer.lock"
# A takeover guard older than this was left by a process killed while taking over.
_TAKEOVER_TIMEOUT_S = 30.0


class WorkdirLockedError(RuntimeError):
    """Another process holds the workdir's writer lock."""


def _process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), else None."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
    return int(fields[19]) if len(fields) > 19 else None


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # a killed process its parent has not reaped yet is gone for our purposes
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """Who holds a workdir lock (the content of its lock file)."""

    host: str
    pid: int
    since: str
    purpose: str = ""
    command: str = ""
    start: int | None = None  # process start time (Linux clock ticks), tells a reused pid
    token: str = ""

    @classmethod
    def current(cls, purpose: str) -> "LockHolder":
        now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        command = " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
        pid = os.getpid()
        return cls(
            socket.gethostname(), pid, now, purpose, command, _process_start(pid),
            secrets.token_hex(8),
        )  # fmt: skip

    def describe(self) -> str:
        what = f" for {self.purpose}" if self.purpose else ""
        command = f", command: {self.command}" if self.command else ""
        return f"host {self.host}, pid {self.pid}, since {self.since}{what}{command}"

    def is_stale(self) -> bool:
        """True when this holder is a process of this host that no longer runs."""
        if self.host != socket.gethostname():
            return False  # cannot be checked from here
        if not _is_running(self.pid):
            return True
        start = _process_start(self.pid)
        return self.start is not None and start is not None and start != self.start


def _read_holder(path: pathlib.Path) -> LockHolder | None:
    """The holder in a lock file; None when the file is gone. Raises ValueError if garbled."""
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise ValueError(f"unreadable lock file {path}: {error}") from error
    fields = {f.name for f in dataclasses.fields(LockHolder)}
    try:
        return LockHolder(**{k: v for k, v in payload.items() if k in fields})
    except TypeError as error:
        raise ValueError(f"unreadable lock file {path}: {error}") from error


def _publish(path: pathlib.Path, holder: LockHolder, replace: bool) -> bool:
    """Creates (or with `replace`, replaces) `path` holding `holder`, complete at once.

    Returns False when `path` exists and `replace` is False.
    """
    content = json.dumps(dataclasses.asdict(holder), indent=2) + "\n"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = pathlib.Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and the lock is never seen half-written
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            try:
                out = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(out, "w") as f:
                f.write(content)
        return True
    finally:
        tmp.unlink(missing_ok=True)


class WorkdirLock:
    """The writer lock of a workdir: `with WorkdirLock(workdir, "training"): ...`.

    Acquired on entry (raises WorkdirLockedError naming the holder when another live process
    holds it), released on exit and, should the block never exit, at interpreter exit.
    """

    def __init__(self, directory: str | os.PathLike, purpose: str = ""):
        self.path = pathlib.Path(directory).absolute() / LOCK_FILE
        self.purpose = purpose
        self._holder: LockHolder | None = None

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._holder is not None

    def acquire(self) -> None:
        if self.held:
            raise WorkdirLockedError(f"{self.path} is already held by this lock object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = LockHolder.current(self.purpose)
        for _ in range(20):
            if _publish(self.path, holder, replace=False):
                break
            try:
                found = _read_holder(self.path)
            except ValueError as error:
                raise WorkdirLockedError(
                    f"{error}; if no run uses this workdir, delete the lock file"
                ) from None
            if found is None:
                continue  # released meanwhile
            if found.is_stale() and self._take_over(found, holder):
                logging.warning(
                    "took over the lock %s of a process that no longer runs (%s)",
                    self.path,
                    found.describe(),
                )
                break
            if not found.is_stale():
                raise WorkdirLockedError(self._locked_message(found))
            time.sleep(0.05)  # another process is taking the stale lock over
        else:
            raise WorkdirLockedError(f"could not take the lock {self.path}: it keeps changing")
        self._holder = holder
        atexit.register(self.release)

    def release(self) -> None:
        """Removes the lock file if it is still this holder's (idempotent)."""
        if self._holder is None:
            return
        holder, self._holder = self._holder, None
        atexit.unregister(self.release)
        try:
            found = _read_holder(self.path)
        except ValueError:
            return
        if found is not None and found.token == holder.token:
            self.path.unlink(missing_ok=True)

    def _locked_message(self, found: LockHolder) -> str:
        workdir = self.path.parent
        here = found.host == socket.gethostname()
        who = "this process" if here and found.pid == os.getpid() else "another run"
        advice = (
            "wait for it to finish or stop it"
            if here
            else f"if that run is gone, delete {self.path}"
        )
        return f"workdir {workdir} is locked: {who} writes to it ({found.describe()}); {advice}"

    def _take_over(self, stale: LockHolder, holder: LockHolder) -> bool:
        """Replaces the stale lock with ours; one process at a time (a `.takeover` file)."""
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - guard.stat().st_mtime > _TAKEOVER_TIMEOUT_S:
                    guard.unlink()  # left by a process killed while taking over
            return False
        try:
            try:
                current = _read_holder(self.path)
            except ValueError:
                return False
            if current is None or current.token != stale.token:
                return False  # someone else got there first
            return _publish(self.path, holder, replace=True)
        finally:
            guard.unlink(missing_ok=True)
