"""The JSON the project writes: strict (``null`` for a number that is not finite), versioned, with provenance.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which strict parsers (browsers, ``jq``,
most languages) reject; :func:`dumps` writes ``null`` instead and refuses nothing else. Every result
file (``curve``/``cards``/``train``/``bench``/``reproduce --json``, ``train --save``'s result.json) is
:func:`stamp`-ed: ``schema_version`` says which layout it has, ``provenance`` what produced it
(package versions, dtype, device, CPU features, the commit when the code is a git checkout). Readers
treat a ``null`` where a number was expected as "not finite" (:func:`number`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 1: the files before they carried schema_version and provenance (read the same way)
_PACKAGES = ("numpy", "torch", "transformers", "scikit-learn", "safetensors", "tokenizers")
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "asimd")


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float (also numpy scalars) replaced by None; containers copied."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # a numpy or torch scalar
        return strict(obj.item())
    return obj


def dumps(obj: Any, **kw) -> str:
    """``json.dumps`` of :func:`strict` ``obj``: never ``NaN``/``Infinity`` in the text."""
    return json.dumps(strict(obj), allow_nan=False, **kw)


def number(x: Any) -> float:
    """A number read back from a result file: ``null`` (written for NaN/inf) becomes NaN."""
    return math.nan if x is None else float(x)


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def numbers_back(obj: Any, keys: frozenset[str] = frozenset(), *, every: bool = False) -> Any:
    """A result file read back with NaN where :func:`dumps` wrote ``null`` for a number that was not finite.

    A list or dict whose values are all numbers or ``null`` (ν per layer, a band, an ``eval`` dict)
    gets NaN for each ``null``; elsewhere a ``null`` becomes NaN only under one of ``keys`` (the
    reader's scalar number fields), as ``null`` also means "none" (an unknown commit, no band).
    ``every``: the reader's layout holds no "none" (a benchmark's numbers): every ``null`` is NaN.
    """
    if obj is None and every:
        return math.nan
    if isinstance(obj, list):
        if obj and all(_is_num(v) or v is None for v in obj):
            return [math.nan if v is None else v for v in obj]
        return [numbers_back(v, keys, every=every) for v in obj]
    if isinstance(obj, dict):
        if obj and all(_is_num(v) or v is None for v in obj.values()) and any(_is_num(v) for v in obj.values()):
            return {k: math.nan if v is None else v for k, v in obj.items()}
        return {
            k: (math.nan if v is None and k in keys else numbers_back(v, keys, every=every)) for k, v in obj.items()
        }
    return obj


@functools.lru_cache(maxsize=1)
def _commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


@functools.lru_cache(maxsize=1)
def _static() -> dict:
    from importlib import metadata as md

    versions = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in _CPU_FLAGS if f in have]
                break
    except OSError:
        pass
    return {"packages": versions, "machine": platform.machine(), "cpu_features": flags, "commit": _commit()}


def provenance(*, device: str | None = None, dtype: str | None = None) -> dict:
    """What produced a result: package versions, machine and CPU features, commit (None outside git), device, dtype."""
    p = dict(_static())
    try:
        import torch

        p["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        pass
    if device is not None:
        p["device"] = device
    if dtype is not None:
        p["dtype"] = dtype
    return p


def stamp(obj: dict, *, device: str | None = None, dtype: str | None = None) -> dict:
    """``obj`` with ``schema_version`` first and ``provenance`` last (an old stamp is replaced)."""
    body = {k: v for k, v in obj.items() if k not in ("schema_version", "provenance")}
    return {"schema_version": SCHEMA_VERSION, **body, "provenance": provenance(device=device, dtype=dtype)}
