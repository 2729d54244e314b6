"""Files: atomic output and checksums of a directory.

Atomic output: a reader (a resumed run, a notebook, a user's script) never sees a half-written
table, config or result: the content goes to a hidden temporary file in the target's directory
(same filesystem) and is renamed over the target only once it is complete; on any error the
temporary is removed and an existing target is left as it was.

Checksums (`write_checksums` / `verify_checksums`): `checksum.json` lists the sha256 of every
file below a directory, so truncated, emptied, missing or flipped files are found before they
are read.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterable, Iterator
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


CHECKSUM_FILE = "checksum.json"


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_checksums(
    directory: str | os.PathLike, exclude: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """{relative posix path: {"sha256", "bytes"}} of every file below `directory`, except
    CHECKSUM_FILE and the files in `exclude` (relative paths or bare file names)."""
    root = pathlib.Path(directory)
    skipped = {CHECKSUM_FILE, *exclude}
    sums = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative in skipped or path.name in skipped:
            continue
        sums[relative] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    return sums


def write_checksums(directory: str | os.PathLike, exclude: Iterable[str] = ()) -> pathlib.Path:
    """Writes `directory`/CHECKSUM_FILE (atomically) for its files as they are now."""
    payload = {"files": directory_checksums(directory, exclude)}
    return write_json(pathlib.Path(directory) / CHECKSUM_FILE, payload)


def verify_checksums(directory: str | os.PathLike) -> str | None:
    """None when every file CHECKSUM_FILE lists is there with its sha256, else what is wrong
    (the first two problems, and how many more). FileNotFoundError without CHECKSUM_FILE."""
    root = pathlib.Path(directory)
    listing = root / CHECKSUM_FILE
    text = listing.read_text()  # FileNotFoundError: no checksum to verify against
    try:
        expected = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{CHECKSUM_FILE} is unreadable ({type(error).__name__})"
    problems = []
    for relative, entry in sorted(expected.items()):
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif _sha256(path) != entry["sha256"]:
            problems.append(f"{relative} differs from its checksum ({path.stat().st_size} bytes)")
    if not problems:
        return None
    more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
    return "; ".join(problems[:2]) + more
