"""Hand freed heap back to the system during a long pass (glibc only; elsewhere a silent no-op).

A stream holds little (its statistics), but glibc's allocator keeps what the batches free:
each thread of the forward pass allocates from an arena of its own, large blocks come from
the heap once the dynamic mmap threshold has grown, and a heap is only shrunk from its top.
The process then grows with the number of batches, far beyond what it holds. :func:`trim`
(``malloc_trim(0)``) returns the free pages of every arena, those between live blocks too;
:func:`analysis.stream.curve.trimming` calls it every :data:`analysis.stream.curve.TRIM_ROWS`
texts, which keeps most of the gain of trimming after every batch at a fraction of the calls
(the stream's peak growth is the ``stream_memory`` section of docs/benchmarks.md).

Not done: ``mallopt`` thresholds (``M_MMAP_THRESHOLD``/``M_TRIM_THRESHOLD`` 1 MiB, one arena;
what ``MALLOC_MMAP_THRESHOLD_=1048576`` etc. set from the environment). They last for the whole
process (glibc cannot go back to its dynamic threshold), and every block of a MiB or more then
becomes an mmap with its page faults: the pass spends many times the system time.
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
