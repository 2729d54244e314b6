"""gentg_jax.logs: which log lines reach the user, and when progress bars show."""

import logging

from absl import logging as absl_logging

from gentg_jax import logs
from tests import helpers


def _record(path: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("absl", level, path, 1, message, None, None)


def test_library_info_and_false_warnings_are_dropped():
    orbax = "/venv/site-packages/orbax/checkpoint/checkpoint_manager.py"
    own = str(helpers.REPO / "gentg_jax" / "train" / "loop.py")
    keep = logs._LibraryNoise().filter
    assert keep(_record(own, logging.INFO, "parallel=single over 1 devices"))
    assert not keep(_record(orbax, logging.INFO, "CheckpointManagerOptions=..."))
    assert not keep(
        _record(orbax, logging.WARNING, "Requested `tracked_metric`; did not provide metrics.")
    )
    assert not keep(_record(orbax, logging.INFO, "No metadata found for process_index=0"))
    assert keep(_record(orbax, logging.WARNING, "Checkpoint step 3 is incomplete"))
    assert keep(_record(orbax, logging.ERROR, "No metadata found"))  # errors always
    verbosity = absl_logging.get_verbosity()
    try:
        absl_logging.set_verbosity(absl_logging.DEBUG)  # -v 1 keeps everything
        assert keep(_record(orbax, logging.INFO, "CheckpointManagerOptions=..."))
    finally:
        absl_logging.set_verbosity(verbosity)


def test_setup_logging_is_idempotent():
    logs.setup_logging()
    logs.setup_logging()
    assert logging.getLogger("absl").filters.count(logs._FILTER) == 1
    assert logging.getLogger("jax").getEffectiveLevel() >= logging.WARNING
    assert absl_logging.get_absl_handler().python_handler.emit.bar_safe


def test_bars_show_on_terminals_or_when_forced(monkeypatch):
    monkeypatch.delenv("GENTG_PROGRESS", raising=False)
    with logs.progress(desc="x", total=3) as bar:  # pytest's stderr is not a terminal
        assert not logs.shown(bar)
    monkeypatch.setenv("GENTG_PROGRESS", "1")
    with logs.progress(desc="x", total=3) as bar:
        assert logs.shown(bar)
    with logs.progress(desc="x", total=3, enabled=False) as bar:
        assert not logs.shown(bar)
    monkeypatch.setenv("GENTG_PROGRESS", "0")
    assert logs.bars_enabled() is True  # tqdm's disable=True
