"""Bench section ``cpu_bf16``: bfloat16 autocast on the CPU against float32, its speed-up and its effect.

On gemma3-270m when it is installed (else MPNet, else MiniLM: :func:`analysis.bench.training_cache.pick_model`;
a model given with ``--model`` is used instead), on rotten_tomatoes (600 texts, max length 128; ``--quick``
200), in one process, float32 and ``autocast-bfloat16`` (float32 weights, forward pass under bf16 autocast)
side by side:

- the all-layer curve (:func:`analysis.pipeline.compute_curve` of the same sample, the states cache
  bypassed so both really compute), repetitions alternating, medians: ``cpu_bf16_curve_speedup`` (float32
  time ÷ bf16 time); from the same curves ``cpu_bf16_nu_max_rel_change`` (the largest |ν_bf16 − ν_fp32| /
  |ν_fp32| over layers 0..L) and ``cpu_bf16_lstar_change`` (ℓ* of the bf16 curve − ℓ* of the float32 one);
- training: variability k = 1 at the float32 curve's ℓ* (the same selection, seed and texts for both; 60
  steps of batch 16, the frozen-prefix cache as by default, 300 held-out texts evaluated once, at the end;
  ``--quick`` 20 steps, 100 texts): ``cpu_bf16_step_speedup`` (float32 ÷ bf16 training time per step,
  evaluations and the prefix pass not counted) and ``cpu_bf16_metric_change`` (the held-out metric after
  the run, bf16 − float32).
  ``cpu_bf16_speedup`` is the per-step training ratio.

Where the device is not the CPU, or the CPU reports no native bfloat16 (neither AVX512-BF16 nor AMX: bf16
would be emulated, slower than float32), the section records ``{"cpu_bf16": {"skipped": why}}`` and no keys.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

BF16 = "autocast-bfloat16"
KEYS = (
    "cpu_bf16_speedup",
    "cpu_bf16_curve_speedup",
    "cpu_bf16_step_speedup",
    "cpu_bf16_nu_max_rel_change",
    "cpu_bf16_lstar_change",
    "cpu_bf16_metric_change",
)


def skip_reason(device: str) -> str | None:
    """One line saying why bf16 autocast cannot be measured against float32 here, or None when it can."""
    from analysis.models import load

    dev = load.resolve_device(device)
    if dev != "cpu":
        return f"the device is {dev}, not the CPU (this section measures CPU bfloat16)"
    if not load.cpu_bf16_supported():
        return "this CPU reports no native bfloat16 (neither AVX512-BF16 nor AMX); bf16 autocast would be emulated"
    return None


def cpu_bf16(
    *,
    quick: bool = False,
    model: str | None = None,
    device: str = "auto",
    n: int | None = None,
    n_eval: int | None = None,
    steps: int | None = None,
    reps: int | None = None,
    max_length: int = 128,
    warmup: bool = True,
    progress=print,
) -> dict:
    """The section's results: ``{"cpu_bf16": details, "cpu_bf16_speedup": …, …}``, or
    ``{"cpu_bf16": {"skipped": why}}`` (see the module).

    ``n``: texts of the curve, also the training texts (600, quick 200); ``n_eval``: held-out texts (300, quick
    100); ``steps``: training steps of each run (60, quick 20); ``reps``: curve repetitions per dtype (3, quick
    1); ``warmup``: an untimed small curve and two untimed steps per dtype first.
    """
    from analysis.bench.training_cache import pick_model
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig

    why = skip_reason(device)
    if why:
        progress(f"cpu_bf16: skipped, {why}")
        return {"cpu_bf16": {"skipped": why}}
    name = model or pick_model()
    n = n or (200 if quick else 600)
    a32 = AnalysisConfig(
        model=name,
        task=TaskConfig("rotten_tomatoes"),
        sampling=SampleConfig(n=n, seed=0),
        max_length=max_length,
        device="cpu",
        dtype="float32",
    )
    curves = _curves(a32, reps or (1 if quick else 3), warmup, progress)
    n_eval, steps = n_eval or (100 if quick else 300), steps or (20 if quick else 60)
    runs = _training(a32, curves["float32"]["nu"], n_eval, steps, warmup, progress)
    return _summary(name, n, curves, runs)


def _curves(a32, reps: int, warmup: bool, progress) -> dict:
    """{dtype: {"nu": ν per layer (L+1 floats), "seconds": median curve time, "times": every time}}."""
    from analysis.pipeline import compute_curve

    cfgs = {"float32": a32, BF16: replace(a32, dtype=BF16)}
    if warmup:  # not timed: each dtype's model loads, allocators and kernels settle
        for c in cfgs.values():
            compute_curve(replace(c, sampling=replace(c.sampling, n=min(32, c.sampling.n))), use_cache=False)
    times: dict[str, list[float]] = {k: [] for k in cfgs}
    nu: dict[str, list[float]] = {}
    for i in range(reps):  # alternate so the machine's drift hits both
        for k, c in cfgs.items():
            progress(f"cpu_bf16: curve {k}, {c.sampling.n} texts ({i + 1}/{reps})")
            t = time.perf_counter()
            curve, _ = compute_curve(c, use_cache=False)  # the states cache bypassed: both really compute
            times[k].append(time.perf_counter() - t)
            nu[k] = [float(v) for v in curve.variability]
    return {k: {"nu": nu[k], "seconds": statistics.median(times[k]), "times": times[k]} for k in cfgs}


def _training(a32, nu32: list[float], n_eval: int, steps: int, warmup: bool, progress) -> dict:
    """{dtype: the run's result dict}: variability k = 1 at the float32 curve's ℓ*, the same config for both."""
    from analysis.training import TrainConfig, select, train

    sel = select("variability", len(nu32) - 1, 1, nu32)
    # one held-out evaluation, at the end: the metric compared; per-step times count steps only
    base = TrainConfig(
        a32, sel, steps=steps, batch_size=16, eval_n=n_eval, eval_every=steps, seed=0, strategy="variability"
    )
    jobs = {"float32": base, BF16: replace(base, analysis=replace(a32, dtype=BF16))}
    if warmup:  # not timed
        for j in jobs.values():
            train(replace(j, steps=2, eval_n=16, eval_every=10**6))
    runs = {}
    for k, j in jobs.items():
        progress(f"cpu_bf16: training {k} ({steps} steps, {n_eval} held-out texts)")
        runs[k] = train(j).result.to_dict()
    return runs


def _summary(name: str, n: int, curves: dict, runs: dict) -> dict:
    from analysis.recommend import recommend_layer

    nu32, nu16 = curves["float32"]["nu"], curves[BF16]["nu"]
    rel = [abs(b - f) / abs(f) if f else (0.0 if b == f else float("inf")) for f, b in zip(nu32, nu16, strict=True)]
    worst = max(range(len(rel)), key=rel.__getitem__)
    lstar = {k: int(recommend_layer(c["nu"])) for k, c in curves.items()}
    r32, r16 = runs["float32"], runs[BF16]
    metric = r32["metric"]
    step_s = {k: r["train_seconds"] / max(r["steps"], 1) for k, r in runs.items()}
    out = {
        "cpu_bf16_curve_speedup": curves["float32"]["seconds"] / curves[BF16]["seconds"],
        "cpu_bf16_step_speedup": step_s["float32"] / step_s[BF16],
        "cpu_bf16_nu_max_rel_change": float(rel[worst]),
        "cpu_bf16_lstar_change": lstar[BF16] - lstar["float32"],
        "cpu_bf16_metric_change": float(r16["eval"][metric] - r32["eval"][metric]),
    }
    out["cpu_bf16_speedup"] = out["cpu_bf16_step_speedup"]
    details = {
        "model": name,
        "n": n,
        "layers": len(nu32) - 1,
        "curve_s": {k: c["seconds"] for k, c in curves.items()},
        "curve_times": {k: c["times"] for k, c in curves.items()},
        "nu": {k: c["nu"] for k, c in curves.items()},
        "nu_max_rel_change_layer": worst,
        "lstar": lstar,
        "selection": f"variability k = 1: classifier {r32['classifier_layer']}, tune {r32['tuned_layers']}",
        "steps": r32["steps"],
        "batch_size": r32["batch_size"],
        "n_train": r32["n_train"],
        "n_eval": r32["n_eval"],
        "step_s": step_s,
        "metric": metric,
        "held_out": {k: r["eval"][metric] for k, r in runs.items()},
        "prefix_cache": {k: bool((r.get("prefix_cache") or {}).get("used")) for k, r in runs.items()},
        "dtype": {k: r["dtype"] for k, r in runs.items()},
    }
    return {"cpu_bf16": details, **out}


def headlines(res: dict) -> list[tuple]:
    """``key(...)`` arguments of the report's headline table for this section's keys (none when skipped)."""
    return [
        ("CPU bf16 autocast: float32 ÷ bf16, training per step (`cpu_bf16_speedup`)", "cpu_bf16_speedup", ".2f"),
        (
            "CPU bf16 autocast: float32 ÷ bf16, all-layer curve (`cpu_bf16_curve_speedup`)",
            "cpu_bf16_curve_speedup",
            ".2f",
        ),
        (
            "CPU bf16 autocast: largest relative change of ν (`cpu_bf16_nu_max_rel_change`)",
            "cpu_bf16_nu_max_rel_change",
            ".1e",
        ),
        ("CPU bf16 autocast: ℓ*(bf16) − ℓ*(float32) (`cpu_bf16_lstar_change`)", "cpu_bf16_lstar_change", "+.0f"),
        (
            "CPU bf16 autocast: held-out metric, bf16 − float32 (`cpu_bf16_metric_change`)",
            "cpu_bf16_metric_change",
            "+.3f",
        ),
    ]


def report_lines(res: dict) -> list[str]:
    """The report's section (empty when the results do not hold it; one line when it was skipped)."""
    t = res.get("cpu_bf16")
    if not t:
        return []
    L = ["", "## bfloat16 autocast on the CPU", ""]
    if "skipped" in t:
        return L + [f"Skipped: {t['skipped']}."]
    c, s, ls = t["curve_s"], t["step_s"], t["lstar"]
    h, m = t["held_out"], t["metric"]
    cache = "with" if t["prefix_cache"].get("float32") else "without"
    return L + [
        f"{t['model']}, rotten_tomatoes, float32 against float32 weights under bfloat16 autocast, side by side in "
        f"one process. All-layer curve of {t['n']} texts (states cache bypassed): {c['float32']:.1f} s against "
        f"{c[BF16]:.1f} s ({res['cpu_bf16_curve_speedup']:.2f}×). The largest relative change of ν over the "
        f"{t['layers'] + 1} layers is {res['cpu_bf16_nu_max_rel_change']:.1e} (layer "
        f"{t['nu_max_rel_change_layer']}); ℓ* is {ls['float32']} in float32 and {ls[BF16]} in bf16.",
        "",
        f"Training, {t['selection']}, {t['steps']} steps of batch {t['batch_size']} on {t['n_train']} texts "
        f"({cache} the frozen-prefix cache): {s['float32'] * 1e3:.0f} ms per step in float32 against "
        f"{s[BF16] * 1e3:.0f} ms in bf16 ({res['cpu_bf16_step_speedup']:.2f}×; this per-step ratio is "
        f"`cpu_bf16_speedup`). Held-out {m} on {t['n_eval']} texts: {h['float32']:.3f} in float32, "
        f"{h[BF16]:.3f} in bf16.",
    ]
