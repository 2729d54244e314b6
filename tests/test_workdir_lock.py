"""gentg_jax.workdir_lock: one writer per workdir, stale locks taken over."""

import json
import os
import socket
import subprocess
import sys

import pytest

from gentg_jax import workdir_lock


def _dead_pid() -> int:
    """The pid of a process of this host that has finished (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return int(process.stdout)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with workdir_lock.WorkdirLock(tmp_path, "training tgt") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        with pytest.raises(workdir_lock.WorkdirLockedError) as error:
            workdir_lock.WorkdirLock(tmp_path, "evaluation").acquire()
        message = str(error.value)
        assert f"workdir {tmp_path} is locked" in message and f"pid {os.getpid()}" in message
        assert holder["since"] in message and "training tgt" in message
    assert not (tmp_path / workdir_lock.LOCK_FILE).exists()  # released
    # Another live process of this host (the parent here) holds it: refused, not taken over.
    foreign = {**holder, "pid": os.getppid(), "start": None, "token": "x"}
    (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(foreign))
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getppid()}"):
        workdir_lock.WorkdirLock(tmp_path).acquire()
    # Another host's lock is never taken over; the message says how to clear it.
    (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps({**foreign, "host": "elsewhere"}))
    with pytest.raises(workdir_lock.WorkdirLockedError, match="if that run is gone, delete"):
        workdir_lock.WorkdirLock(tmp_path).acquire()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "since": "then", "token": "old"}
    (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(stale))
    with caplog.at_level("WARNING"), workdir_lock.WorkdirLock(tmp_path, "training") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert f"pid {stale['pid']}" in caplog.text and "no longer runs" in caplog.text
    assert not (tmp_path / workdir_lock.LOCK_FILE).exists()
    # A reused pid: this process's pid, but another start time.
    reused = {**stale, "pid": os.getpid(), "start": 1}
    (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(reused))
    with workdir_lock.WorkdirLock(tmp_path):
        pass
