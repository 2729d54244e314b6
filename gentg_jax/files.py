"""Atomic file output: every file the project writes appears whole or not at all.

A reader (a resumed run, a notebook, a user's script) never sees a half-written table, config or
result: the content goes to a hidden temporary file in the target's directory (same filesystem)
and is renamed over the target only once it is complete; on any error the temporary is removed
and an existing target is left as it was.
"""

import contextlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which races with other threads.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of `path` (same suffix) to write; it becomes `path` when the
    block exits normally, and is deleted when it raises. Creates the parent directory."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix)
    os.close(fd)
    tmp = pathlib.Path(name)
    # mkstemp creates 0600; the result gets the permissions a plain open() would give it.
    tmp.chmod(0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes `text` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def write_json(path: str | os.PathLike, payload: Any, **dump_kwargs: Any) -> pathlib.Path:
    """json.dumps(payload, indent=2, **dump_kwargs) + newline to `path` atomically."""
    return write_text(path, json.dumps(payload, **{"indent": 2, **dump_kwargs}) + "\n")
