"""Bench section ``training_cache``: the frozen-prefix cache and the task-sized vocabulary, each with and without.

On gemma3-270m when it is installed (else MPNet, else MiniLM; the result says which), on
rotten_tomatoes (1,200 training and 600 held-out texts, max length 128, batch 16), in one process:

- variability k = 1 at ℓ* with the prefix cache and without it: whole runs (prefix pass, steps and
  evaluations), and per step; their ratio next to the ratio of the same runs' FLOPs
  (:func:`analysis.training.cost.run_flops`);
- full fine-tuning with the task-sized vocabulary, with the whole matrix (``full_vocab``) and with the
  embedding matrix frozen: per step.
"""

from __future__ import annotations

from dataclasses import replace

GOALS = {"prefix_cache_speedup_over_flop": 0.8, "vocab_vs_frozen": 1.15}


def pick_model() -> str:
    """gemma3-270m when installed, else mpnet, else minilm."""
    from analysis.models.registry import registry_status

    installed = {r["name"] for r in registry_status() if r["installed"]}
    return next(m for m in ("gemma3-270m", "mpnet", "minilm") if m in installed or m == "minilm")


def training_cache(
    *,
    quick: bool = False,
    model: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    n_train: int | None = None,
    n_eval: int | None = None,
    steps: int | None = None,
    full_steps: int | None = None,
    max_length: int = 128,
    warmup: bool = True,
    progress=print,
) -> dict:
    """The section's results: ``{"training_cache": details, "prefix_cache_speedup": …, …}`` (see the module).

    ``quick``: fewer texts and steps. ``model`` None picks one (:func:`pick_model`). ``steps``: steps of the
    variability runs (300, quick 60); ``full_steps``: of each full fine-tuning run (8, quick 3). ``warmup``:
    two untimed steps of each kind of run first.
    """
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig, compute_curve
    from analysis.training import TrainConfig, select, train

    name = model or pick_model()
    n_train = n_train or (400 if quick else 1200)
    n_eval = n_eval or (200 if quick else 600)
    steps = steps or (60 if quick else 300)
    full_steps = full_steps or (3 if quick else 8)
    a = AnalysisConfig(
        model=name,
        task=TaskConfig("rotten_tomatoes"),
        sampling=SampleConfig(n=n_train, seed=0),
        max_length=max_length,
        device=device,
        dtype=dtype,
    )
    curve = compute_curve(a)[0].variability
    L = len(curve) - 1
    var = select("variability", L, 1, curve)
    full = select("full", L, 1)
    frozen = replace(full, tune_embeddings=False)
    base = TrainConfig(a, var, steps=steps, batch_size=16, eval_n=n_eval, seed=0, strategy="variability")
    fcfg = replace(base, selection=full, steps=full_steps, eval_every=10**6, strategy="full")
    jobs = {
        "cached": base,
        "uncached": replace(base, prefix_cache=False),
        "task_vocab": fcfg,
        "full_vocab": replace(fcfg, full_vocab=True),
        "frozen_embeddings": replace(fcfg, selection=frozen),
    }
    for k, j in jobs.items():  # warm-up, not timed: the model loads, allocators and kernels settle
        if warmup and k != "cached":  # (the same model and selection as "uncached", without its prefix pass)
            train(replace(j, steps=2, eval_n=16, eval_every=10**6))
    runs: dict[str, dict] = {}
    for key, j in jobs.items():  # with and without side by side
        progress(f"training_cache: {key} ({j.steps} steps)")
        runs[key] = train(j).result.to_dict()
    return _summary(name, var, a, runs)


def _per_step(r: dict) -> float:
    return r["train_seconds"] / max(r["steps"], 1)


def _evaluated(r: dict) -> int:
    """Held-out predictions the run made: its periodic evaluations and the final one when not the last of them."""
    n = len(r["evals"]) + (0 if r["evals"] and r["evals"][-1]["step"] == r["steps"] else 1)
    return n * r["n_eval"]


def _summary(name: str, sel, a, runs: dict) -> dict:
    from analysis.pipeline import cached_model, resolve_target
    from analysis.training.cost import load_dtype, run_flops

    c, u = runs["cached"], runs["uncached"]
    target = resolve_target(a)
    m, _ = cached_model(target.ref, target.device, load_dtype(target.device, target.dtype))
    flops = {
        k: run_flops(
            m,
            sel,
            r["seq_len"],
            2,
            examples=r["steps"] * r["batch_size"],
            texts=r["n_train"] + r["n_eval"],
            evaluated=_evaluated(r),
            cached=k == "cached",
        )  # fmt: skip
        for k, r in (("cached", c), ("uncached", u))
    }
    out = {
        "prefix_cache_speedup": u["seconds"] / c["seconds"],
        "prefix_cache_flop_speedup": flops["uncached"] / flops["cached"],
        "prefix_cache_step_speedup": _per_step(u) / _per_step(c),
        "vocab_speedup": _per_step(runs["full_vocab"]) / _per_step(runs["task_vocab"]),
        "vocab_vs_frozen": _per_step(runs["task_vocab"]) / _per_step(runs["frozen_embeddings"]),
    }
    out["prefix_cache_speedup_over_flop"] = out["prefix_cache_speedup"] / out["prefix_cache_flop_speedup"]
    details = {
        "model": name,
        "selection": f"variability k = 1: classifier {sel.classifier_layer}, tune {list(sel.tuned_layers)}",
        "n_train": c["n_train"],
        "n_eval": c["n_eval"],
        "batch_size": c["batch_size"],
        "steps": c["steps"],
        "full_steps": runs["task_vocab"]["steps"],
        "seconds": {k: r["seconds"] for k, r in runs.items()},
        "step_s": {k: _per_step(r) for k, r in runs.items()},
        "prefix_cache": c["prefix_cache"],
        "vocab": runs["task_vocab"]["vocab"],
        "run_flops": flops,
    }
    return {"training_cache": details, **out}


def headlines(res: dict) -> list[tuple]:
    """``key(...)`` arguments of the report's headline table for this section's keys."""
    g = GOALS
    return [
        ("prefix cache: whole run without ÷ with (`prefix_cache_speedup`)", "prefix_cache_speedup", ".2f"),
        ("prefix cache: the same in FLOPs (`prefix_cache_flop_speedup`)", "prefix_cache_flop_speedup", ".2f"),
        (
            "prefix cache: measured ÷ FLOP speed-up",
            "prefix_cache_speedup_over_flop",
            ".2f",
            f"≥ {g['prefix_cache_speedup_over_flop']}",
            lambda v: v >= g["prefix_cache_speedup_over_flop"],
        ),
        ("prefix cache: per step (`prefix_cache_step_speedup`)", "prefix_cache_step_speedup", ".2f"),
        ("full fine-tuning: whole vocabulary ÷ task-sized, per step (`vocab_speedup`)", "vocab_speedup", ".2f"),
        (
            "full fine-tuning: task-sized ÷ embeddings frozen, per step (`vocab_vs_frozen`)",
            "vocab_vs_frozen",
            ".2f",
            f"≤ {g['vocab_vs_frozen']}",
            lambda v: v <= g["vocab_vs_frozen"],
        ),
    ]


def report_lines(res: dict) -> list[str]:
    """The report's section (empty when the results do not hold it)."""
    t = res.get("training_cache")
    if not t:
        return []
    s, sec = t["step_s"], t["seconds"]
    v = t["vocab"]
    rows = f"{v['rows']:,} of {v['of']:,} rows" if v.get("task_sized") else f"not task-sized ({v.get('why')})"
    return [
        "",
        "## Training cache",
        "",
        f"{t['model']}, rotten_tomatoes, {t['n_train']} training and {t['n_eval']} held-out texts, "
        f"batch {t['batch_size']}. {t['selection']}, {t['steps']} steps: {sec['cached']:.0f} s with the "
        f"frozen-prefix cache ({t['prefix_cache'].get('where', '-')}), {sec['uncached']:.0f} s without "
        f"(whole runs: prefix pass, steps, evaluations): {sec['uncached'] / sec['cached']:.2f}× faster, where the "
        f"FLOPs predict {res['prefix_cache_flop_speedup']:.2f}×; {s['cached'] * 1e3:.0f} vs "
        f"{s['uncached'] * 1e3:.0f} ms per step.",
        "",
        f"Full fine-tuning, {t['full_steps']} steps each: {s['task_vocab']:.2f} s per step with the task-sized "
        f"vocabulary ({rows}), {s['full_vocab']:.2f} s with the whole matrix, {s['frozen_embeddings']:.2f} s "
        "with the embedding matrix frozen.",
    ]
