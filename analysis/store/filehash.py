"""Whole-file hashes, remembered by path, size, inode and mtime (ns) so that an unchanged file is read once.

A model folder's cache fingerprint must change when any byte of its weights or tokenizer changes (a
partially fine-tuned checkpoint differs from its base in the middle of the file, at the same size).
Reading gigabytes on every run would be slow, so a digest is kept in ``<cache>/filehashes.json``
together with the file's (size, inode, mtime_ns): a file rewritten in place gets a new mtime, a file
replaced by a rename a new inode, and either is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from analysis.store.atomic import write_atomic

_lock = threading.Lock()
_memo: dict[str, dict] = {}
MEMO_NAME = "filehashes.json"


def _stamp(before: os.stat_result) -> list[int]:
    return [before.st_size, before.st_ino, before.st_mtime_ns]


def _load(memo: Path | None) -> None:
    if memo is None or _memo.get("__loaded__", {}).get(str(memo)):
        return
    try:
        stored = json.loads(memo.read_text())
    except (OSError, ValueError):
        stored = {}
    if isinstance(stored, dict):
        for k, v in stored.items():
            if isinstance(v, dict) and isinstance(v.get("stamp"), list) and isinstance(v.get("digest"), str):
                _memo.setdefault(k, v)
    _memo.setdefault("__loaded__", {})[str(memo)] = True


def file_digest(path: str | os.PathLike, memo: Path | None = None) -> str:
    """blake2b-128 of the whole file ``path``; from the memo when size, inode and mtime_ns are unchanged.

    ``memo``: the JSON file that keeps digests between processes (None: this process only).
    """
    p = Path(path).resolve()
    with _lock:
        _load(memo)
        before = p.stat()
        hit = _memo.get(str(p))
        if hit is not None and hit["stamp"] == _stamp(before):
            return hit["digest"]
    with open(p, "rb") as fh:
        digest = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    after = p.stat()
    if _stamp(after) != _stamp(before):  # written while it was read: use the digest now, remember nothing
        return digest
    with _lock:
        _memo[str(p)] = {"stamp": _stamp(before), "digest": digest}
        if memo is not None:
            try:
                memo.parent.mkdir(parents=True, exist_ok=True)
                keep = {k: v for k, v in _memo.items() if k != "__loaded__"}
                write_atomic(memo, json.dumps(keep))
            except Exception:  # a memo that cannot be written only costs a re-read next time
                pass
    return digest
