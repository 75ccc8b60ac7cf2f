"""analysis/memtrim.py: a safe call with or without glibc; the stream trims every TRIM_ROWS texts."""

import platform
import sys

import numpy as np

from analysis.stream import curve as streamcurve
from analysis.stream import memtrim


def test_trim_is_a_bool_and_a_no_op_without_glibc(monkeypatch):
    assert isinstance(memtrim.trim(), bool)
    assert isinstance(memtrim.trim(), bool)  # twice in a row: nothing left to hand back is not an error
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert memtrim._glibc() is not None
    monkeypatch.setattr(memtrim, "_libc", None)  # another libc (musl, macOS, Windows)
    assert memtrim.trim() is False


def test_trimming_passes_every_batch_on_and_trims_every_trim_rows(monkeypatch):
    calls: list[int] = []
    trims: list[int] = []
    monkeypatch.setattr(streamcurve, "TRIM_ROWS", 10)
    monkeypatch.setattr(memtrim, "trim", lambda: trims.append(len(calls)) or True)
    f = streamcurve.trimming(lambda index, p: calls.append(len(index)))
    for b in (4, 4, 4, 3, 7, 1):  # 4+4+4 ≥ 10: trim; 3+7 ≥ 10: trim; 1 left
        f(np.arange(b), np.zeros((2, b, 3), np.float32))
    assert calls == [4, 4, 4, 3, 7, 1]
    assert trims == [3, 5]
