"""Atomic writes: a file or a folder appears whole under its final name, or not at all.

Shared by the cache, training exports, the benchmarks and the reproduction
run. Every write goes to a temporary name in the same folder first and is
renamed into place (``os.replace`` / ``os.rename`` are atomic on one file
system), and the temporary is removed on any error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from analysis.errors import VariscopeError


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path.

    Raises :class:`VariscopeError` (one line) when the folder is missing or
    ``path`` is a folder; nothing is left behind on failure.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise VariscopeError(f"cannot write '{path}': folder '{parent}' does not exist")
    if p.is_dir():
        raise VariscopeError(f"cannot write '{path}': it is a folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise VariscopeError(f"cannot write '{path}': {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def check_output(
    path: str | os.PathLike | None,
    *,
    folder: bool = False,
    overwrite: bool = True,
    what: str = "output",
    make_parents: bool = False,
) -> None:
    """Refuse, before any work starts, an output path that cannot be written.

    A file output needs an existing parent folder and must not be a folder; a
    folder output (``folder=True``) must not be a file, its parent must exist,
    and with ``overwrite=False`` it must be absent or empty. ``None`` passes.
    With ``make_parents`` missing folders are allowed (the writer creates them):
    the nearest existing ancestor must be a writable folder.
    """
    if path is None:
        return
    if not str(path).strip():
        raise VariscopeError(f"{what} needs a path, got an empty one")
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise VariscopeError(f"cannot write {what} '{path}': '{parent}' is a file, not a folder")
    if not parent.is_dir():
        raise VariscopeError(f"cannot write {what} '{path}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise VariscopeError(f"cannot write {what} '{path}': folder '{parent}' is not writable")
    if folder:
        if p.exists() and not p.is_dir():
            raise VariscopeError(f"cannot write {what} '{path}': it is a file, not a folder")
        if not overwrite and p.is_dir() and any(p.iterdir()):
            raise VariscopeError(f"{what} folder '{path}' is not empty; pass --overwrite to replace what is there")
    else:
        if p.is_dir():
            raise VariscopeError(f"cannot write {what} '{path}': it is a folder")
        if p.exists() and not p.is_file():
            raise VariscopeError(f"cannot write {what} '{path}': it is not a regular file")


@contextmanager
def staging_dir(parent: str | os.PathLike, prefix: str = ".staging-") -> Iterator[Path]:
    """A fresh temporary folder under ``parent``, removed on exit whatever happens.

    Fill it, then :func:`publish_dir` it to its final name inside the block.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp: Path, final: Path, *, replace: bool = False) -> bool:
    """Rename the filled folder ``tmp`` to ``final``; True if it was published.

    With ``replace=False`` an existing ``final`` wins (another process got
    there first) and False is returned. With ``replace=True`` an existing
    ``final`` is moved aside first and removed after the rename.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if replace and final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
            raise
        if not final.exists():
            raise
        return False
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return True
