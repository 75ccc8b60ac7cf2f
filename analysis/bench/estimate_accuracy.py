"""Bench section ``estimate``: how close the time estimate printed before a run comes to the run.

On gemma3-270m when it is installed (else MPNet, else MiniLM: :func:`analysis.bench.training_cache.pick_model`),
on rotten_tomatoes (1,200 training and 600 held-out texts; ``--quick`` 400 and 200; max length 128, batch 16),
float32 and, where the CPU has native bfloat16, ``autocast-bfloat16``: variability k = 1 at the middle layer
(100 steps, quick 40, five evaluations, the frozen-prefix cache as by default), in one process:

- the estimate a sweep, a reproduction and the Training page print before it starts
  (:func:`analysis.training.estimate.estimate_configs`: the cost model at the measured forward rate), then the
  run itself (:func:`analysis.training.train`);
- ``estimate_train_ratio``: the estimate's steps and evaluations ÷ the run's training loop (steps and evaluations,
  the Trainer's own ``train_runtime``), the worst of the dtypes measured (farthest from 1);
- ``estimate_total_ratio``: the whole estimate (the frozen-prefix pass included) ÷ the run's wall time, which also
  holds what the estimate leaves out (copying the model, tokenising), the worst likewise.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

#: an estimate within this factor of the run, either way, meets the goal
GOAL_FACTOR = 1.5
KEYS = ("estimate_train_ratio", "estimate_total_ratio")


def estimate_accuracy(
    *,
    quick: bool = False,
    model: str | None = None,
    device: str = "auto",
    steps: int | None = None,
    n_train: int | None = None,
    n_eval: int | None = None,
    warmup: bool = True,
    progress=print,
) -> dict:
    """The section's results: ``{"estimate": details, "estimate_train_ratio": …, "estimate_total_ratio": …}``.

    ``model`` None picks one (:func:`~analysis.bench.training_cache.pick_model`); ``warmup``: two untimed steps of
    each run first (the model loaded, the rate measured once, as a sweep's later runs find them).
    """
    from analysis.bench.cpu_bf16 import BF16, skip_reason
    from analysis.bench.training_cache import pick_model
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.models.load import describe, resolve_device, resolve_model
    from analysis.pipeline import AnalysisConfig
    from analysis.training import Selection, TrainConfig

    name = model or pick_model()
    n_train, n_eval = n_train or (400 if quick else 1200), n_eval or (200 if quick else 600)
    steps = steps or (40 if quick else 100)
    dev = resolve_device(device)
    a = AnalysisConfig(
        model=name,
        task=TaskConfig("rotten_tomatoes"),
        sampling=SampleConfig(n=n_train, seed=0),
        max_length=128,
        device=dev,
        dtype="float32",
    )
    layer = max(1, int(describe(resolve_model(name))["layers"]) // 2)
    tc = TrainConfig(a, Selection(layer, (layer,)), steps=steps, batch_size=16, eval_n=n_eval, seed=0)
    dtypes = ["float32"] + ([] if skip_reason(device) else [BF16])
    runs = {}
    for dtype in dtypes:
        progress(f"estimate: {name}, {dtype}, layer {layer}, {steps} steps")
        runs[dtype] = _one(replace(tc, analysis=replace(a, dtype=dtype)), warmup)
    return _summary(name, layer, tc, runs)


def _one(tc, warmup: bool) -> dict:
    """{estimate: its parts and seconds, loop: the run's training-loop seconds, wall: the run's wall seconds}."""
    from analysis.training import train
    from analysis.training.data import split_train_eval
    from analysis.training.estimate import estimate_configs

    if warmup:
        train(replace(tc, steps=2, eval_n=16, eval_every=10**6))
    training, _ = split_train_eval(tc.analysis, tc.eval_n)
    est = estimate_configs([tc], training.texts, len(training.label_names))[0]
    t = time.perf_counter()
    r = train(tc).result
    wall = time.perf_counter() - t
    return {
        "estimate_s": est.seconds,
        "estimate_loop_s": est.parts["train"] + est.parts["eval"],
        "how": est.how,
        "loop_s": r.steps / r.steps_per_second,
        "wall_s": wall,
    }


def _worst(ratios: list[float]) -> float:
    """The ratio farthest from 1 on a log scale (an estimate twice too long and one half too short are as bad)."""
    return max(ratios, key=lambda x: abs(math.log(x)))


def _summary(name: str, layer: int, tc, runs: dict) -> dict:
    train_ratio = {k: r["estimate_loop_s"] / r["loop_s"] for k, r in runs.items()}
    total_ratio = {k: r["estimate_s"] / r["wall_s"] for k, r in runs.items()}
    details = {
        "model": name,
        "selection": f"variability k = 1 at layer {layer}",
        "steps": tc.steps,
        "n_train": tc.analysis.sampling.n,
        "n_eval": tc.eval_n,
        "runs": runs,
        "train_ratio": train_ratio,
        "total_ratio": total_ratio,
    }
    return {
        "estimate": details,
        "estimate_train_ratio": _worst(list(train_ratio.values())),
        "estimate_total_ratio": _worst(list(total_ratio.values())),
    }


def headlines(res: dict) -> list[tuple]:
    """``key(...)`` arguments of the report's headline table for this section's keys."""
    lo, hi = 1 / GOAL_FACTOR, GOAL_FACTOR
    goal = f"{lo:.2f}–{hi:.1f}"
    return [
        (
            "time estimate ÷ the run: steps and evaluations (`estimate_train_ratio`)",
            "estimate_train_ratio",
            ".2f",
            goal,
            lambda v: lo <= v <= hi,
        ),
        (
            "time estimate ÷ the run: whole, wall time (`estimate_total_ratio`)",
            "estimate_total_ratio",
            ".2f",
            goal,
            lambda v: lo <= v <= hi,
        ),
    ]


def report_lines(res: dict) -> list[str]:
    """The report's section (empty when the results do not hold it)."""
    e = res.get("estimate")
    if not e:
        return []
    lines = [
        "",
        "## Time estimates against the runs",
        "",
        f"{e['model']}, rotten_tomatoes, {e['n_train']} training and {e['n_eval']} held-out texts, {e['selection']}, "
        f"{e['steps']} steps of batch 16, five evaluations. The estimate is the one a sweep, a reproduction and the "
        "Training page print before they start; the run follows it in the same process.",
        "",
        "| dtype | estimate: steps + evaluations s | run: training loop s | ratio | estimate: whole s | run: wall s "
        "| ratio | how |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, r in e["runs"].items():
        lines.append(
            f"| {k} | {r['estimate_loop_s']:.1f} | {r['loop_s']:.1f} | {e['train_ratio'][k]:.2f} "
            f"| {r['estimate_s']:.1f} | {r['wall_s']:.1f} | {e['total_ratio'][k]:.2f} | {r['how']} |"
        )
    return lines
