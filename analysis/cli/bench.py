"""``python -m analysis bench``: speed measured as ratios, side by side in one run (see analysis/bench.py)."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.bench import report as bench_report
from analysis.bench import sections as bench
from analysis.errors import VariscopeError
from analysis.store.atomic import check_output, write_atomic
from analysis.store.jsonio import dumps, numbers_back, stamp


def register(sub) -> None:
    b = sub.add_parser("bench", help="speed benchmarks (ratios measured side by side)")
    add_args(b)
    b.set_defaults(func=cmd_bench)


def add_args(p) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes, a few minutes on 2 idle cores")
    p.add_argument("--model", default="minilm")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated sections: " + ", ".join(bench.SECTIONS),
    )
    p.add_argument("--doc", default=None, help="write a Markdown report (e.g. docs/benchmarks.md)")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--plots", default=None, help="folder for PNG plots")
    p.add_argument(
        "--merge-into",
        default=None,
        metavar="JSON",
        help="add this run's sections to an earlier run's JSON (replacing theirs; noted in the report) "
        "and write the result to --json",
    )
    p.add_argument(
        "--report-from",
        default=None,
        metavar="JSON",
        help="measure nothing: rebuild --doc and --plots from an earlier run's JSON",
    )


def _command(a) -> str:
    """The bench command line that reproduces this run (for the report)."""
    parts = ["bench"] + (["--quick"] if a.quick else [])
    for flag, default in (
        ("model", "minilm"),
        ("device", "auto"),
        ("dtype", "auto"),
        ("only", None),
        ("reps", None),
        ("json", None),
        ("doc", None),
        ("plots", None),
        ("merge_into", None),
    ):
        v = getattr(a, flag)
        if v is not None and v != default:
            parts += [f"--{flag.replace('_', '-')}", str(v)]
    return " ".join(parts)


def _read_results(path: str) -> dict:
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


def cmd_bench(a) -> int:
    check_output(a.json, what="--json")
    check_output(a.doc, what="--doc", make_parents=True)
    check_output(a.plots, folder=True, what="--plots", make_parents=True)
    if a.reps is not None and a.reps < 1:
        raise VariscopeError(f"--reps must be at least 1, got {a.reps}")
    if a.only and set(a.only.split(",")) - set(bench.SECTIONS):
        raise VariscopeError(
            f"unknown bench section(s) {', '.join(sorted(set(a.only.split(',')) - set(bench.SECTIONS)))}; "
            f"use {', '.join(bench.SECTIONS)}"
        )
    if a.report_from:
        res = _read_results(a.report_from)
        bench_report.make(res, a.plots or "docs/img", a.doc, res.get("command", "bench"))
        return 0
    base = _read_results(a.merge_into) if a.merge_into else None  # refused before anything is measured
    res = bench.measure(a, _command(a))
    if base is not None:
        res = merge(base, res)
    if a.json:
        write_atomic(a.json, dumps(stamp(res), indent=2, default=float))
    if a.plots or a.doc:
        bench_report.make(res, a.plots or "docs/img", a.doc, res["command"])
    return 0
