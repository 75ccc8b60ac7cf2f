"""A safe, atomic on-disk cache of arrays.

Layout: ``<root>/<kind>/<key>/`` with one ``.npy`` file per array, optional
JSON blobs and ``manifest.json`` (shapes, dtypes, SHA-256 of every file, the
code version and the config the key was made from). Entries are written in a
temporary folder under ``<root>/.tmp`` and renamed into place, so a crash or
a second process never leaves a half entry under the final name. Arrays are
read with ``allow_pickle=False``; nothing is ever unpickled. An entry that
fails any check is discarded with a warning and the caller recomputes.

Size: after each write the cache is brought within its budget (``CACHE_BUDGET_BYTES``)
by deleting the least recently used entries (an entry's folder time is touched at every
read), ``prefix`` entries first (large and cheap to remake); never one whose key lock is
taken (being computed or written) or that a process holds (:meth:`DiskCache.hold`: a
shared lock, e.g. on prefix states read memory-mapped).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from analysis.errors import VariscopeError
from analysis.store.atomic import publish_dir, staging_dir

KINDS = ("states", "projections", "runs", "cards", "streams", "prefix")
CACHE_FORMAT = 1
# The size budget: after each write, least recently used entries go (prefix states first, never an entry a live
# process holds) until the cache fits (DiskCache.enforce_budget). Here, not in settings: settings imports the pipeline.
CACHE_BUDGET_BYTES = 20 * 10**9


def make_key(config: dict) -> str:
    """SHA-256 (hex, 32 chars) of the canonical JSON of ``config``."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class DiskCache:
    """Arrays and JSON blobs under hashed keys. ``root`` defaults to ``cache/``."""

    def __init__(self, root=None, budget: int | None = None):
        from analysis.models.load import default_cache_dir

        self.root = Path(root) if root else default_cache_dir()
        self.budget = CACHE_BUDGET_BYTES if budget is None else int(budget)

    def _dir(self, kind: str, key: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}")
        if not (len(key) == 32 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"cache keys are 32 hex characters, got {key!r}")
        return self.root / kind / key

    @contextmanager
    def lock(self, kind: str, key: str):
        """Exclusive per-key lock, so two processes computing one key do the work once."""
        from filelock import FileLock

        d = self._folder(".locks")
        with FileLock(str(d / f"{kind}-{key}.lock")):
            yield

    def hold(self, kind: str, key: str):
        """A shared hold on an entry while a process uses it (e.g. memory-mapped): an open file, held until closed.

        :meth:`enforce_budget` never deletes a held entry. None where the platform has no ``flock``.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return None
        f = open(self._folder(".locks") / f"{kind}-{key}.hold", "a")  # noqa: SIM115 - held by the caller
        fcntl.flock(f, fcntl.LOCK_SH)
        return f

    def _free(self, kind: str, key: str) -> bool:
        """Whether no process computes, writes or holds the entry (checked without waiting)."""
        from filelock import FileLock, Timeout

        locks = self._folder(".locks")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None  # type: ignore[assignment]
        try:
            with FileLock(str(locks / f"{kind}-{key}.lock"), timeout=0):
                if fcntl is None:
                    return True
                with open(locks / f"{kind}-{key}.hold", "a") as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        return False
                    return True
        except Timeout:
            return False

    def enforce_budget(self, keep: tuple[str, str] | None = None) -> list[dict]:
        """Delete least recently used entries, ``prefix`` ones first, until the cache fits ``self.budget``.

        Never ``keep`` (kind, key) nor an entry in use (:meth:`_free`). Returns the deleted entries' rows.
        """
        rows = self.entries()
        total = sum(r["bytes"] for r in rows)
        gone: list[dict] = []
        for r in sorted(rows, key=lambda r: (r["kind"] != "prefix", r["used"])):
            if total <= self.budget:
                break
            if (r["kind"], r["key"]) == keep or not self._free(r["kind"], r["key"]):
                continue
            self.delete(r["kind"], r["key"])
            total -= r["bytes"]
            gone.append(r)
        return gone

    def _folder(self, name: str) -> Path:
        """``root/name`` as a folder; anything else standing there is damage: warned about, removed, rebuilt."""
        p = self.root / name
        if p.exists() and not p.is_dir():
            self._damaged(p, "a file stands where a folder should be")
        p.mkdir(parents=True, exist_ok=True)
        return p

    @staticmethod
    def _damaged(p: Path, why: str) -> None:
        warnings.warn(f"discarding damaged cache path {p}: {why}", stacklevel=3)
        try:
            p.unlink()
        except IsADirectoryError:
            shutil.rmtree(p, ignore_errors=True)
        except FileNotFoundError:
            pass

    def save(
        self,
        kind: str,
        key: str,
        arrays: dict,
        *,
        meta: dict | None = None,
        blobs: dict | None = None,
        version: int = 0,
        config: dict | None = None,
    ) -> Path:
        """Write an entry atomically; returns its folder. An existing entry wins."""
        final = self._dir(kind, key)
        self._folder(kind)
        if final.exists() and not final.is_dir():
            self._damaged(final, "a file stands where an entry folder should be")
        with staging_dir(self._folder(".tmp"), prefix=f"{kind}-{key[:8]}-") as tmp:
            files = {}
            for name, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                if arr.dtype == object:
                    raise ValueError(f"array {name!r} has dtype object; only plain dtypes are cached")
                p = tmp / f"{name}.npy"
                np.save(p, arr, allow_pickle=False)
                files[p.name] = {"array": name, "shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": _sha256(p)}
            for name, obj in (blobs or {}).items():
                p = tmp / f"{name}.json"
                p.write_text(json.dumps(obj, ensure_ascii=False))
                files[p.name] = {"blob": name, "sha256": _sha256(p)}
            manifest = {
                "format": CACHE_FORMAT,
                "kind": kind,
                "key": key,
                "version": version,
                "created": time.time(),
                "files": files,
                "meta": meta or {},
                "config": config or {},
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            publish_dir(tmp, final)  # another process may have won the race: keep its entry
        self.enforce_budget(keep=(kind, key))
        return final

    def load(self, kind: str, key: str, *, version: int | None = None, mmap: bool = False):
        """Return ``(arrays, blobs, manifest)`` or None if absent or invalid (``mmap``: arrays memory-mapped).

        Invalid entries (unreadable manifest, missing file, checksum, shape or
        dtype mismatch, other code version) are deleted with a warning.
        """
        d = self._dir(kind, key)
        if d.exists() and not d.is_dir():
            self._damaged(d, "a file stands where an entry folder should be")
            return None
        if not d.is_dir():
            return None
        try:
            manifest = json.loads((d / "manifest.json").read_text())
            if manifest.get("format") != CACHE_FORMAT or manifest.get("key") != key:
                raise ValueError("manifest does not belong to this key or format")
            if version is not None and manifest.get("version") != version:
                raise ValueError(f"stale entry from code version {manifest.get('version')} (now {version})")
            arrays, blobs = {}, {}
            for fname, spec in manifest["files"].items():
                p = d / fname
                if not p.is_file():
                    raise ValueError(f"missing file {fname}")
                if _sha256(p) != spec["sha256"]:
                    raise ValueError(f"checksum mismatch in {fname}")
                if "array" in spec:
                    arr = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
                    if list(arr.shape) != spec["shape"] or str(arr.dtype) != spec["dtype"]:
                        raise ValueError(
                            f"{fname} has shape {arr.shape} {arr.dtype}, manifest says {spec['shape']} {spec['dtype']}"
                        )
                    arrays[spec["array"]] = arr
                else:
                    blobs[spec["blob"]] = json.loads(p.read_text())
        except Exception as e:  # any failure means: discard and recompute
            warnings.warn(f"discarding invalid cache entry {kind}/{key}: {e}", stacklevel=2)
            self.delete(kind, key)
            return None
        with suppress(OSError):  # a read-only cache still reads
            os.utime(d)  # last used: the budget deletes the least recently used entries first
        return arrays, blobs, manifest

    def delete(self, kind: str, key: str) -> None:
        d = self._dir(kind, key)
        if d.exists():
            # rename first so readers never see a half-deleted entry
            trash = self._folder(".tmp") / f"trash-{key}-{os.getpid()}-{time.time_ns()}"
            try:
                os.rename(d, trash)
            except OSError:
                trash = d
            shutil.rmtree(trash, ignore_errors=True)

    def entries(self) -> list[dict]:
        """All entries: kind, key, bytes, created, version and a description."""
        rows = []
        for kind in KINDS:
            base = self.root / kind
            if not base.is_dir():
                continue
            for d in sorted(base.iterdir()):
                if not d.is_dir():
                    continue
                size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                try:
                    used = d.stat().st_mtime
                except OSError:  # deleted meanwhile
                    continue
                try:
                    m = json.loads((d / "manifest.json").read_text())
                except (OSError, ValueError):
                    m = {}
                rows.append(
                    {
                        "kind": kind,
                        "key": d.name,
                        "bytes": size,
                        "created": m.get("created"),
                        "used": used,
                        "version": m.get("version"),
                        "describe": m.get("meta", {}).get("describe", ""),
                    }
                )
        return rows

    def clear(self, kind: str | None = None, key: str | None = None) -> int:
        """Delete one entry, one kind or everything; returns the number deleted."""
        n = 0
        for row in self.entries():
            if (kind is None or row["kind"] == kind) and (key is None or row["key"].startswith(key)):
                self.delete(row["kind"], row["key"])
                n += 1
        shutil.rmtree(self.root / ".tmp", ignore_errors=True)
        return n


def check_cache_dir(root) -> Path:
    p = Path(root)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VariscopeError(f"cache folder '{root}' cannot be created: {e.strerror}") from None
    if not os.access(p, os.W_OK):
        raise VariscopeError(f"cache folder '{root}' is not writable")
    return p
