"""Shared test setup: the repository root on sys.path, and session fixtures.

compilation_cache  a persistent XLA compilation cache in the session's temp dir (also used by
                   the subprocesses of `helpers.run_device_script`)
tiny_data_dir      synthetic_h36m/detector with S1 (train) and S9 (test), 3 actions, built once

Under pytest-xdist (`pytest -n 2`, the README's test command) both live in the directory all
workers share, so a program compiled by one worker is a cache hit for the other and the dataset
is built once (the first worker builds it under a file lock; the other waits, then reads it).
"""

import contextlib
import fcntl
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import helpers  # noqa: E402  (needs the root on sys.path)

# LLVM optimisation off before jax starts its backend (importing jax does not start it): it
# halves compile time, most of the suite's time, and the tiny test programs run in milliseconds
# either way (the subprocesses of helpers.subprocess_env do the same). Speed is measured by
# benchmarks/, never here.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " " + helpers.FAST_COMPILE_FLAG
    ).strip()


def _shared_temp(tmp_path_factory) -> pathlib.Path:
    """The session's temp dir; under xdist, the parent of the workers' own ones."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@contextlib.contextmanager
def _exclusive(path: pathlib.Path):
    """An exclusive lock on `path` (created), held for the with-block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory) -> str:
    return helpers.enable_compilation_cache(_shared_temp(tmp_path_factory))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, compilation_cache) -> str:
    shared = _shared_temp(tmp_path_factory)
    with _exclusive(shared / "tiny_tfds.lock"):
        return helpers.build_tiny_dataset(shared)
