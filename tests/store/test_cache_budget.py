"""The disk cache's size budget: least recently used entries go after a write, prefix ones first, never a held one."""

import os
import subprocess
import sys

import numpy as np

from analysis.store.cache import DiskCache, make_key
from conftest import ROOT

ARR = {"x": np.zeros(1000, dtype=np.float64)}  # 8 kB: entries of about 8.3 kB


def _put(cache: DiskCache, kind: str, name: str, used: float) -> str:
    key = make_key({"name": name})
    d = cache.save(kind, key, ARR)
    os.utime(d, (used, used))  # when it was last used
    return key


def _left(cache: DiskCache) -> set[str]:
    return {r["key"] for r in cache.entries()}


def test_prefix_entries_go_first_then_the_least_recently_used(tmp_path):
    cache = DiskCache(tmp_path, budget=10**9)
    old = _put(cache, "states", "old", 1_000)
    _put(cache, "prefix", "pre", 5_000)  # used more recently than "old", but a prefix entry
    mid = _put(cache, "runs", "mid", 2_000)
    assert cache.load("states", old) is not None  # a read makes "old" the most recently used
    size = max(r["bytes"] for r in cache.entries())
    cache.budget = 3 * size + size // 2  # room for three of the four
    new = _put(cache, "cards", "new", 10_000)
    assert _left(cache) == {old, mid, new}
    cache.budget = 2 * size + size // 2
    newer = make_key({"name": "newer"})
    cache.save("cards", newer, ARR)  # the entry just written stays
    assert _left(cache) == {old, newer}  # "mid" (used at 2,000) and "new" (10,000) were the least recently used


def test_an_entry_held_or_locked_is_never_deleted(tmp_path):
    cache = DiskCache(tmp_path, budget=10**9)
    held = _put(cache, "prefix", "held", 1_000)
    locked = _put(cache, "states", "locked", 2_000)
    _put(cache, "prefix", "free", 3_000)
    cache.budget = 0
    h = cache.hold("prefix", held)
    try:
        with cache.lock("states", locked):
            new = make_key({"name": "new"})
            cache.save("runs", new, ARR)
            assert _left(cache) == {held, locked, new}  # over budget, but what is in use stays
    finally:
        h.close()
    cache.save("runs", make_key({"name": "last"}), ARR)
    assert _left(cache) == {make_key({"name": "last"})}


def test_a_hold_of_another_process_keeps_its_entry(tmp_path):
    cache = DiskCache(tmp_path, budget=10**9)
    key = _put(cache, "prefix", "theirs", 1_000)
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from analysis.store.cache import DiskCache\n"
        f"h = DiskCache({str(tmp_path)!r}).hold('prefix', {key!r}); print('held', flush=True); sys.stdin.read()\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        cache.budget = 0
        cache.save("runs", make_key({"name": "mine"}), ARR)
        assert key in _left(cache)
    finally:
        p.communicate("", timeout=60)
    cache.save("runs", make_key({"name": "again"}), ARR)
    assert key not in _left(cache)  # released with the process
