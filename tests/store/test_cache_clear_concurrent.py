"""``cache clear`` never removes the staging folder of a computation that is still writing."""

import subprocess
import sys
import threading

import numpy as np


class _Blocking:
    """An array that, when the cache converts it (inside its staging folder), waits for the test."""

    def __init__(self, inside: threading.Event, go: threading.Event):
        self.inside, self.go = inside, go

    def __array__(self, dtype=None, copy=None):
        self.inside.set()
        assert self.go.wait(timeout=60)
        return np.arange(6, dtype=np.float32)


def test_clear_while_an_entry_is_being_written_keeps_the_writer_alive(cache):
    inside, go = threading.Event(), threading.Event()
    errors = []

    def write():
        try:
            cache.save("states", "a" * 32, {"x": _Blocking(inside, go)}, version=1)
        except Exception as e:  # pragma: no cover - the failure this test catches
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    assert inside.wait(timeout=60)  # the staging folder exists and is being filled
    cache.clear()
    go.set()
    t.join(timeout=60)
    assert errors == []
    arrays, _blobs, _m = cache.load("states", "a" * 32, version=1)
    assert np.array_equal(arrays["x"], np.arange(6, dtype=np.float32))


def test_clear_removes_staging_left_by_a_dead_process(cache):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    left = cache.root / ".tmp" / f"states-aaaaaaaa-p{pid}-xyz"
    left.mkdir(parents=True)
    (left / "x.npy").write_bytes(b"half")
    cache.clear()
    assert not left.exists()
