"""Earlier benchmark results: read them back, and merge a later run's sections into them."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.errors import VariscopeError
from analysis.store.jsonio import numbers_back


def read_results(path: str) -> dict:
    """An earlier run's results, or a VariscopeError saying why they cannot be used."""
    try:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VariscopeError(f"cannot read benchmark results from {path}: {e}") from None
    if not isinstance(res, dict) or not isinstance(res.get("machine"), dict):
        raise VariscopeError(f"{path} is not the JSON of a `python -m analysis bench` run (no 'machine' entry)")
    return {k: v if k in ("machine", "provenance") else numbers_back(v, every=True) for k, v in res.items()}


def merge(base: dict, new: dict) -> dict:
    """``base`` with ``new``'s sections and keys; ``merged`` records which run measured which sections."""
    out = dict(base)
    out.pop("notes", None)  # checks written beside the earlier run's sections may no longer hold
    own = {"command", "quick", "machine", "section_seconds", "merged"}
    out.update({k: v for k, v in new.items() if k not in own})
    out["section_seconds"] = {**base.get("section_seconds", {}), **new.get("section_seconds", {})}
    part = {k: new[k] for k in ("command", "quick", "machine")}
    sections = list(new.get("section_seconds", {}))
    earlier = []  # earlier merges, less the sections this run measured again
    for p in base.get("merged", []):
        left = [s for s in p["sections"] if s not in sections]
        if left:
            earlier.append({**p, "sections": left})
    out["merged"] = [*earlier, {**part, "sections": sections}]
    return out
