"""User errors on the command line: one line `program: message`, exit status 1, no traceback.

Every entrypoint's main is wrapped in `user_errors`. What counts as a user error (a bad flag
value, input file, workdir or checkpoint) is an error the project raises on purpose, naming the
thing that is wrong:

- ValueError (CheckpointError, UnsafeFileError and the input checks are ValueErrors),
  WorkdirLockedError and NonFiniteError, raised by this project's own code (the innermost
  frame of the traceback is in gentg_jax/, experiments/, data_prep/ or configs/);
- OSError about a named file (FileNotFoundError, NotADirectoryError, PermissionError, ...).

Anything else (the same types raised inside a library, other exceptions) is a bug or an
unforeseen failure and keeps its full traceback. GENTG_DEBUG=1 shows tracebacks for user errors
too. Kept free of heavy imports: data_prep and infer use it without the training stack.
"""

from __future__ import annotations

import functools
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

_PROJECT = pathlib.Path(__file__).resolve().parents[1]
_OWN_DIRS = tuple(
    str(_PROJECT / name) + os.sep for name in ("gentg_jax", "experiments", "data_prep", "configs")
)
DEBUG_ENV = "GENTG_DEBUG"


def _raised_by_us(error: BaseException) -> bool:
    traceback = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_filename.startswith(_OWN_DIRS)


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is one of the project's deliberate user-facing errors (see above)."""
    if isinstance(error, OSError) and (error.filename or _raised_by_us(error)):
        return True
    # By name, not import: importing gentg_jax.files / train here would slow every command.
    names = {cls.__name__ for cls in type(error).__mro__}
    deliberate = isinstance(error, ValueError) or names & {"WorkdirLockedError", "NonFiniteError"}
    return bool(deliberate) and _raised_by_us(error)


def one_line(error: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def user_errors(main: Callable[..., Any], program: str | None = None) -> Callable[..., Any]:
    """Wraps an absl main: user errors exit with `program: message` on stderr and status 1."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        message = None
        try:
            return main(*args, **kwargs)
        except (ValueError, OSError, RuntimeError, ArithmeticError) as error:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0") or not is_user_error(error):
                raise
            message = one_line(error)
            # Dropping the traceback here (not at exit) lets the failed library calls it holds
            # (orbax's asyncio reads) finish quietly instead of printing at interpreter exit.
            error.__traceback__ = None
            del error
        name = program or pathlib.Path(sys.argv[0]).stem
        print(f"{name}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(1)

    return wrapped
