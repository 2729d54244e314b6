"""Shared test setup: the repository root on sys.path, and session fixtures.

compilation_cache  a persistent XLA compilation cache in the session's temp dir (also used by
                   the subprocesses of `helpers.run_device_script`)
tiny_data_dir      synthetic_h36m/detector with S1 (train) and S9 (test), 3 actions, built once
"""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import helpers  # noqa: E402  (needs the root on sys.path)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory) -> str:
    return helpers.enable_compilation_cache(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, compilation_cache) -> str:
    return helpers.build_tiny_dataset(tmp_path_factory.getbasetemp())
