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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from analysis.errors import VariscopeError

NAME_MAX = 255  # bytes of one path component on the usual file systems (ext4, xfs, btrfs, APFS, NTFS)


def check_path_name(path: str | os.PathLike, what: str = "path") -> None:
    """Refuse a path with a component longer than the file system allows (one line instead of OSError 36)."""
    for part in Path(path).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise VariscopeError(
                f"{what} has a name of {len(os.fsencode(part))} bytes ('{part[:40]}…'); the limit is {NAME_MAX}"
            )


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows (changing it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode(path: Path) -> int:
    """The permissions a new file at ``path`` gets from any other tool: the old file's, else 0666 minus umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def folder_mode() -> int:
    """The permissions of a new folder: 0777 minus umask (``mkdtemp`` makes 0700)."""
    return 0o777 & ~_umask()


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path.

    Raises :class:`VariscopeError` (one line) when the folder is missing or
    ``path`` is a folder; nothing is left behind on failure. The file gets the
    mode an overwritten file had, else the umask's (``mkstemp`` alone makes 0600).
    """
    check_path_name(path, f"'{str(path)[:60]}'")
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise VariscopeError(f"cannot write '{path}': folder '{parent}' does not exist")
    if p.is_dir():
        raise VariscopeError(f"cannot write '{path}': it is a folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    try:
        os.fchmod(fd, file_mode(p))
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
    check_path_name(path, what)
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
    os.chmod(tmp, folder_mode())  # published as it is: the folder a user asked for, not a private 0700 one
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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (also through links, ``..`` or another spelling)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def check_distinct(outputs: Mapping[str, str | None], inputs: Mapping[str, str | None], folders=()) -> None:
    """Refuse outputs aimed at an input, two outputs naming one file, and an output folder holding an input.

    ``outputs`` and ``inputs`` map a flag (``--csv``) to its path (None: not given); ``folders``
    names the outputs that are folders (``--save``): they must not hold an input, because
    ``--overwrite`` writes files into them.
    """
    outs = [(k, v) for k, v in outputs.items() if v]
    ins = [(k, v) for k, v in inputs.items() if v]
    for i, (k, v) in enumerate(outs):
        for k2, v2 in ins:
            if same_file(v, v2):
                raise VariscopeError(f"{k} '{v}' is the input {k2}; write the output to another file")
            if k in folders and Path(v2).expanduser().resolve().is_relative_to(Path(v).expanduser().resolve()):
                raise VariscopeError(f"{k} folder '{v}' holds the input {k2} '{v2}'; save the run to another folder")
        for k2, v2 in outs[i + 1 :]:
            if same_file(v, v2):
                raise VariscopeError(f"{k} and {k2} name the same file '{v}'; give two different files")


@contextmanager
def path_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on the file ``path`` among this machine's processes (read, merge, write under it).

    The lock file lives in the temporary folder, named by the hash of the resolved path, so that
    nothing is added beside the user's file.
    """
    import hashlib

    from filelock import FileLock

    where = Path(tempfile.gettempdir()) / "variscope-locks"
    where.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:32]
    with FileLock(str(where / f"{name}.lock")):
        yield
