"""Hand freed heap back to the system during a long pass (glibc only; elsewhere a silent no-op).

A stream holds little (its statistics), but glibc's allocator keeps what the batches free:
each thread of the forward pass allocates from an arena of its own, large blocks come from
the heap once the dynamic mmap threshold has grown, and a heap is only shrunk from its top.
The process then grows beyond what it holds (MiniLM, 30,000 texts, batch 32: +357 to
+429 MB peak, 28 MB held). :func:`trim` (``malloc_trim(0)``) returns the free pages of every
arena, those between live blocks too; :func:`analysis.stream.curve.trimming` calls it every
:data:`analysis.stream.curve.TRIM_ROWS` texts (measured, same 30,000 texts: +246 MB peak
trimming after every batch of 32, +267 MB every 256 texts).

Not done: ``mallopt`` thresholds (``M_MMAP_THRESHOLD``/``M_TRIM_THRESHOLD`` 1 MiB, one arena;
what ``MALLOC_MMAP_THRESHOLD_=1048576`` etc. set from the environment). They gave +236 MB but
last for the whole process (glibc cannot go back to its dynamic threshold) and every block of
a MiB or more became an mmap and page faults: 55 s of system time in that run against 6 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not glibc


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.gnu_get_libc_version  # noqa: B018 - present in glibc only
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = lib
            except (OSError, AttributeError):
                _libc = None
    return _libc if isinstance(_libc, ctypes.CDLL) else None


def trim() -> bool:
    """Return the free pages of every arena to the system; True if glibc released any."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0))
