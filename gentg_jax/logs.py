"""Console output in one place: which log lines reach the user, and progress bars.

`setup_logging()` is what the entrypoints call (through experiments/_cli.py) and notebooks may
call: INFO lines of this project stay, the libraries' INFO chatter (orbax's option dumps and
per-save notes, TFDS's dataset-info lines, JAX's backend probing) is dropped, warnings stay
unless they are known to be false. An absl verbosity of DEBUG (`-v 1`) keeps everything.

`progress(...)` is a tqdm bar on stderr that shows itself only on an interactive terminal
(tqdm's `disable=None`): a log file gets no bar, only the log lines written at log cadence.
The environment variable GENTG_PROGRESS=1 forces bars on (a notebook), 0 forces them off.
Log lines written while a bar is shown are printed above it, so the bar stays intact.
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib
import sys
from typing import Any

import tqdm
from absl import logging as absl_logging

# Directories whose INFO lines are kept: this project's code.
_PROJECT = pathlib.Path(__file__).resolve().parents[1]
_OWN_DIRS = tuple(
    str(_PROJECT / name) + os.sep
    for name in ("gentg_jax", "experiments", "data_prep", "benchmarks", "configs", "tests")
)
# Library warnings that are not true for this project's use of the library.
_FALSE_WARNINGS = (
    # orbax (INFO today): host-numpy states have no jax.Array metadata, and that is what this
    # project saves.
    "No metadata found",
    # orbax: periodic checkpoints are saved without metrics on purpose (only evaluated steps
    # compete for the best one).
    "Requested `tracked_metric`; did not provide metrics",
)
# Python loggers (not absl) whose INFO lines are noise: JAX logs its backend probing
# ("Unable to initialize backend 'tpu'") at INFO.
_QUIET_LOGGERS = ("jax", "orbax", "tensorflow_datasets", "etils", "grain")
_PROGRESS_ENV = "GENTG_PROGRESS"


class _LibraryNoise(logging.Filter):
    """Drops other packages' records below WARNING and known-false warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if absl_logging.get_verbosity() >= absl_logging.DEBUG:
            return True
        if record.levelno < logging.WARNING:
            return record.pathname.startswith(_OWN_DIRS)
        if record.levelno >= logging.ERROR:
            return True
        message = str(record.msg)
        return not any(text in message for text in _FALSE_WARNINGS)


_FILTER = _LibraryNoise()


def _bar_safe(emit):
    """Wraps a handler's emit so that a line clears the progress bars and redraws them after."""

    @functools.wraps(emit)
    def emit_above_bars(record: logging.LogRecord) -> None:
        with tqdm.tqdm.external_write_mode(file=sys.stderr):
            emit(record)

    emit_above_bars.bar_safe = True
    return emit_above_bars


def setup_logging() -> None:
    """Filters library noise from the absl log and keeps progress bars intact (idempotent).

    Call it once the absl flags are parsed (inside `main`), or at the top of a notebook.
    """
    absl_logger = logging.getLogger("absl")
    if _FILTER not in absl_logger.filters:
        absl_logger.addFilter(_FILTER)
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    # The absl handler passes records to its python_handler's handle(), hence emit() there.
    handler = absl_logging.get_absl_handler().python_handler
    if not getattr(handler.emit, "bar_safe", False):
        handler.emit = _bar_safe(handler.emit)


def bars_enabled() -> bool | None:
    """tqdm's `disable` argument: GENTG_PROGRESS=1 -> False, =0 -> True, unset -> None (shown on
    a terminal only)."""
    value = os.environ.get(_PROGRESS_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return False
    if value in ("0", "false", "no", "off"):
        return True
    return None


def progress(
    iterable: Any = None,
    *,
    desc: str,
    total: float | None = None,
    enabled: bool = True,
    **kwargs: Any,
) -> tqdm.tqdm:
    """A tqdm bar on stderr, shown on terminals only (see the module docstring).

    Args:
      iterable: optional iterable to wrap.
      desc: the bar's label.
      total: expected number of updates (default len(iterable) when it has one).
      enabled: False never shows it (e.g. on processes other than 0, or for short work).
      **kwargs: more tqdm arguments (unit, initial, leave, ...).
    """
    options = {
        "file": sys.stderr,
        "dynamic_ncols": True,
        "mininterval": 0.5,
        "smoothing": 0.1,
        "disable": bars_enabled() if enabled else True,
        **kwargs,
    }
    return tqdm.tqdm(iterable, desc=desc, total=total, **options)


def shown(bar: tqdm.tqdm) -> bool:
    """Whether a bar returned by `progress` is drawn (it is not on a non-interactive stream)."""
    return not bar.disable
