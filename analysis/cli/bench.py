"""``python -m analysis bench``: the flags, read into :class:`~analysis.bench.common.BenchSettings`; the
measuring, merging and reporting are the library's (analysis/bench/)."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.bench import report as bench_report
from analysis.bench.common import SECTION_NAMES, BenchSettings
from analysis.bench.merge import merge, read_results
from analysis.errors import VariscopeError
from analysis.store.atomic import check_output, write_atomic
from analysis.store.jsonio import dumps, stamp

_DEFAULT = BenchSettings()
GPU_JSON, GPU_DOC, GPU_PLOTS = "docs/benchmarks-gpu.json", "docs/benchmarks-gpu.md", "docs/img"


def register(sub) -> None:
    b = sub.add_parser("bench", help="speed benchmarks (ratios measured side by side)")
    add_args(b)
    b.set_defaults(func=cmd_bench)


def add_args(p) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes, a few minutes on 2 idle cores")
    p.add_argument(
        "--model",
        default=None,
        help=f"default {_DEFAULT.model}; the cpu_bf16 section picks its own model (gemma3-270m when installed) "
        "unless --model is given",
    )
    p.add_argument("--device", default=_DEFAULT.device)
    p.add_argument("--dtype", default=_DEFAULT.dtype)
    p.add_argument("--only", default=None, help="comma-separated sections: " + ", ".join(SECTION_NAMES))
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
    p.add_argument(
        "--gpu-record",
        action="store_true",
        help=f"on one CUDA GPU, every GPU section on random models and synthetic texts in about 5 minutes "
        f"(no downloads); writes {GPU_JSON} and {GPU_DOC} unless --json/--doc say otherwise",
    )


def _command(a) -> str:
    """The bench command line that reproduces this run (for the report)."""
    parts = ["bench"] + (["--quick"] if a.quick else []) + (["--gpu-record"] if a.gpu_record else [])
    for flag, default in (
        ("model", None),  # an explicit --model, even the default one, changes what cpu_bf16 measures
        ("device", _DEFAULT.device),
        ("dtype", _DEFAULT.dtype),
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


def settings(a) -> BenchSettings:
    """The flags as checked settings (a VariscopeError names the first that cannot be used)."""
    only = tuple(a.only.split(",")) if a.only else None
    s = BenchSettings(
        model=a.model or _DEFAULT.model,
        model_given=a.model is not None,
        quick=a.quick,
        device=a.device,
        dtype=a.dtype,
        reps=a.reps,
        only=only,
    )
    return s.check()


def cmd_bench(a) -> int:
    if a.gpu_record:
        return _gpu_record(a)
    check_output(a.json, what="--json")
    check_output(a.doc, what="--doc", make_parents=True)
    check_output(a.plots, folder=True, what="--plots", make_parents=True)
    s = settings(a)
    if a.report_from:
        res = read_results(a.report_from)
        bench_report.make(res, a.plots or "docs/img", a.doc, res.get("command", "bench"))
        return 0
    base = read_results(a.merge_into) if a.merge_into else None  # refused before anything is measured
    from analysis.bench.run import measure

    res = measure(s, _command(a))
    if base is not None:
        res = merge(base, res)
    if a.json:
        write_atomic(a.json, dumps(stamp(res), indent=2, default=float))
    if a.plots or a.doc:
        bench_report.make(res, a.plots or "docs/img", a.doc, res["command"])
    return 0


def _gpu_record(a) -> int:
    """``bench --gpu-record``: the GPU sections on random models, written to docs/benchmarks-gpu.*."""
    from analysis.bench import gpu_record

    given = [f for f in ("model", "device", "dtype") if getattr(a, f) not in (None, getattr(_DEFAULT, f))]
    given += [f for f in ("merge_into", "report_from") if getattr(a, f)] + (["quick"] if a.quick else [])
    if given:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise VariscopeError(f"--gpu-record picks its own models, device and sizes; drop {flags}")
    json_out, doc, plots = a.json or GPU_JSON, a.doc or GPU_DOC, a.plots or GPU_PLOTS
    check_output(json_out, what="--json", make_parents=True)
    check_output(doc, what="--doc", make_parents=True)
    check_output(plots, folder=True, what="--plots", make_parents=True)
    only = tuple(a.only.split(",")) if a.only else None
    res = gpu_record.record(gpu_record.RecordSettings(only=only, reps=a.reps).check(), _command(a))
    Path(json_out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(json_out, json.dumps(res, indent=2, default=float))
    bench_report.make(res, plots, doc, res["command"])
    return 0
