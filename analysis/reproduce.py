"""``python -m analysis reproduce``: test the paper's four claims on offline data.

1. tuning the k layers ending at the low-ν layer ℓ* beats tuning the top k layers;
2. it often matches full fine-tuning;
3. ν is robust to data scarcity and class imbalance;
4. it cuts computation.

Every strategy gets the same training budget, learning rate, batch size and
seeds. Finished runs are cached on disk (kind "runs"), so an interrupted run
resumes. ``write_doc`` renders docs/reproduction.md (and plots) from the JSON
alone, so the document's numbers are the JSON's numbers.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import DiskCache, make_key

REPRO_VERSION = 2


@dataclass(frozen=True)
class ReproConfig:
    models: tuple[str, ...] = ("minilm",)
    tasks: tuple[str, ...] = ("rotten_tomatoes", "bbc_news", "reuters_r8")
    ks: tuple[int, ...] = (1, 2, 3)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 16
    n_train: int = 1200
    eval_n: int = 600
    max_length: int = 64
    pooling: str = "mean"
    analysis_n: int = 2000
    bootstrap: int = 50
    fractions: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.05)
    imbalances: tuple[int, ...] = (1, 3, 9)
    device: str = "auto"
    plan: tuple[tuple, ...] | None = None  # (model, tasks[, ks]) entries; default models × tasks × ks
    skip_full: tuple[str, ...] = ()  # models without the (costly) full fine-tuning baseline

    def pairs(self):
        if self.plan:
            return [(e[0], t) for e in self.plan for t in e[1]]
        return [(m, t) for m in self.models for t in self.tasks]

    def ks_for(self, model: str) -> tuple[int, ...]:
        for e in self.plan or ():
            if e[0] == model and len(e) > 2 and e[2]:
                return tuple(e[2])
        return self.ks


QUICK = ReproConfig(
    tasks=("rotten_tomatoes",),
    ks=(1, 2),
    seeds=(0,),
    steps=60,
    n_train=600,
    eval_n=300,
    max_length=64,
    analysis_n=600,
    bootstrap=20,
)


def _acfg(rc: ReproConfig, model: str, task: str, n: int, seed: int, **sampling):
    from .pipeline import AnalysisConfig
    from .tasks import SampleConfig, TaskConfig

    return AnalysisConfig(
        model=model,
        task=TaskConfig(task),
        sampling=SampleConfig(n=n, seed=seed, **sampling),
        pooling=rc.pooling,
        max_length=rc.max_length,
        device=rc.device,
    )


def run(rc: ReproConfig, *, cache: DiskCache | None = None, log=print) -> dict:
    """Run every experiment (resuming from cached runs) and return the results dict."""
    from scipy.stats import spearmanr

    from .models import describe, resolve_model
    from .pipeline import compute_curve
    from .selection import recommend_layer
    from .training import TrainConfig, select, train

    cache = cache or DiskCache()
    out = {
        "settings": {
            **asdict(rc),
            "models": sorted({m for m, _ in rc.pairs()}),
            "tasks": list(dict.fromkeys(t for _, t in rc.pairs())),
        },
        "curves": [],
        "runs": [],
        "robustness": [],
        "started": time.time(),
    }
    for model, task in rc.pairs():
        L = describe(resolve_model(model))["layers"]
        curve, st = compute_curve(_acfg(rc, model, task, rc.analysis_n, 0), cache=cache, bootstrap=rc.bootstrap)
        best = recommend_layer(curve.variability)
        out["curves"].append(
            {
                "model": model,
                "task": task,
                "layers": curve.layers,
                "variability": curve.variability,
                "band": curve.to_dict()["band"],
                "best_layer": best,
                "n": len(st.labels),
                "counts": curve.counts,
            }
        )
        log(f"[{model}/{task}] ν curve over {len(st.labels)} texts: ℓ* = {best} of {L}")
        # claim 3: scarcity and imbalance
        full_nu = curve.variability
        for frac in rc.fractions:
            n = max(4 * len(curve.counts), int(round(rc.analysis_n * frac)))
            c2, s2 = compute_curve(_acfg(rc, model, task, n, 0), cache=cache, bootstrap=rc.bootstrap)
            out["robustness"].append(_robust(model, task, "fraction", frac, c2, s2, full_nu, best, spearmanr))
        if len(curve.counts) == 2:
            for ratio in rc.imbalances:
                c2, s2 = compute_curve(
                    _acfg(rc, model, task, rc.analysis_n, 0, imbalance=(1.0, float(ratio))),
                    cache=cache,
                    bootstrap=rc.bootstrap,
                )
                out["robustness"].append(
                    _robust(model, task, "imbalance", f"1:{ratio}", c2, s2, full_nu, best, spearmanr)
                )
        # claims 1, 2, 4: training
        plans = []
        for seed in rc.seeds:
            if model not in rc.skip_full:
                plans.append(("full", None, seed, select("full", L, 1)))
            for k in rc.ks_for(model):
                plans.append(("variability", k, seed, select("variability", L, k, curve.variability)))
                plans.append(("top", k, seed, select("top", L, k)))
        for strategy, k, seed, sel in plans:
            tc = TrainConfig(
                _acfg(rc, model, task, rc.n_train, seed),
                sel,
                steps=rc.steps,
                lr=rc.lr,
                batch_size=rc.batch_size,
                eval_n=rc.eval_n,
                seed=seed,
                strategy=strategy,
            )
            rec = _cached_train(tc, cache, log, train)
            out["runs"].append(
                {
                    "task": task,
                    "model": model,
                    "strategy": strategy,
                    "k": k,
                    "seed": seed,
                    "identical_to_top": strategy == "variability" and sel == select("top", L, k),
                    **rec,
                }
            )
    out["seconds"] = time.time() - out.pop("started")
    out["verdicts"] = verdicts(out)
    return out


def _robust(model, task, kind, value, curve, st, full_nu, best, spearmanr):
    rho = float(spearmanr(curve.variability, full_nu).statistic)
    from .selection import recommend_layer

    b = recommend_layer(curve.variability)
    return {
        "model": model,
        "task": task,
        "kind": kind,
        "value": value,
        "n": int(len(st.labels)),
        "counts": curve.counts,
        "variability": curve.variability,
        "band": curve.to_dict()["band"],
        "spearman": rho,
        "best_layer": b,
        "best_layer_moved": b != best,
    }


def _cached_train(tc, cache: DiskCache, log, train) -> dict:
    """A training record from the runs cache, or train and store it.

    The key is every field of the TrainConfig (and of its AnalysisConfig), with the
    model name replaced by its weights' fingerprint; the strategy is only a label
    (a variability selection equal to the top-k one is the same run).
    """
    from .models import resolve_model

    a = tc.analysis
    conf = asdict(tc)
    del conf["strategy"]
    conf["analysis"]["model"] = resolve_model(a.model, revision=a.revision).fingerprint
    key = make_key({"what": "run", "version": REPRO_VERSION, "config": conf})
    hit = cache.load("runs", key, version=REPRO_VERSION)
    if hit is not None:
        return hit[1]["record"]
    t = time.time()
    r = train(tc).result.to_dict()
    keep = (
        "classifier_layer",
        "tuned_layers",
        "layers_kept",
        "trainable_params",
        "total_params",
        "flops_vs_full",
        "flops_per_example",
        "eval",
        "metric",
        "seconds",
        "train_seconds",
        "steps_per_second",
        "steps",
        "n_train",
        "n_eval",
    )
    rec = {k: r[k] for k in keep}
    rec["metric_value"] = r["eval"][r["metric"]]
    cache.save(
        "runs",
        key,
        {},
        blobs={"record": rec},
        version=REPRO_VERSION,
        meta={"describe": f"{a.model} · {a.task.name} · {tc.strategy} · seed {tc.seed}"},
    )
    log(
        f"  {tc.strategy:<11} k={len(tc.selection.tuned_layers)} seed={tc.seed}: {r['metric']} "
        f"{rec['metric_value']:.4f} in {time.time() - t:.0f}s"
    )
    return rec


# ------------------------------------------------------------------ verdicts
def _mean_sd(xs):
    xs = list(xs)
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (float("nan"), 0.0)


def summarize(res: dict) -> list[dict]:
    """Mean ± sd of the metric, params, FLOPs and time per (model, task, strategy, k)."""
    groups = {}
    for r in res["runs"]:
        groups.setdefault((r["model"], r["task"], r["strategy"], r["k"]), []).append(r)
    rows = []
    for (model, task, strategy, k), rs in sorted(
        groups.items(), key=lambda x: (x[0][0], x[0][1], x[0][2] != "full", x[0][3] or 0, x[0][2])
    ):
        m, sd = _mean_sd(r["metric_value"] for r in rs)
        rows.append(
            {
                "model": model,
                "task": task,
                "strategy": strategy,
                "k": k,
                "seeds": len(rs),
                "metric": rs[0]["metric"],
                "mean": m,
                "sd": sd,
                "classifier_layer": rs[0]["classifier_layer"],
                "tuned_layers": rs[0]["tuned_layers"],
                "trainable_params": rs[0]["trainable_params"],
                "flops_vs_full": rs[0]["flops_vs_full"],
                "train_seconds": statistics.mean(r["train_seconds"] for r in rs),
                "identical_to_top": bool(rs[0].get("identical_to_top")),
            }
        )
    return rows


def verdicts(res: dict) -> dict:
    """A plain verdict per claim, from the numbers only."""
    rows = summarize(res)
    by = {(r["model"], r["task"], r["strategy"], r["k"]): r for r in rows}
    c1, c2, c4 = [], [], []
    for r in rows:
        if r["strategy"] != "variability":
            continue
        top = by.get((r["model"], r["task"], "top", r["k"]))
        full = next(
            (x for x in rows if (x["model"], x["task"], x["strategy"]) == (r["model"], r["task"], "full")), None
        )
        noise = max(0.01, 2 * max(r["sd"], top["sd"] if top else 0) / math.sqrt(max(r["seeds"], 1)))
        if top:
            if r["identical_to_top"]:
                out = "identical"
            else:
                d = r["mean"] - top["mean"]
                out = "better" if d > noise else "worse" if d < -noise else "tie"
            c1.append(
                {
                    "model": r["model"],
                    "task": r["task"],
                    "k": r["k"],
                    "variability": r["mean"],
                    "top": top["mean"],
                    "outcome": out,
                }
            )
        if full:
            d = r["mean"] - full["mean"]
            c2.append(
                {
                    "model": r["model"],
                    "task": r["task"],
                    "k": r["k"],
                    "variability": r["mean"],
                    "full": full["mean"],
                    "gap": d,
                    "matches": d >= -max(0.01, 2 * full["sd"]),
                }
            )
            c4.append(
                {
                    "model": r["model"],
                    "task": r["task"],
                    "k": r["k"],
                    "flops_vs_full": r["flops_vs_full"],
                    "time_vs_full": r["train_seconds"] / full["train_seconds"] if full["train_seconds"] else None,
                }
            )
    testable = [x for x in c1 if x["outcome"] != "identical"]
    better = sum(x["outcome"] == "better" for x in testable)
    worse = sum(x["outcome"] == "worse" for x in testable)
    if not testable:
        v1 = (
            "not testable here: ℓ* is the top layer for every task, so the variability selection is the top-k selection"
        )
    elif better > len(testable) / 2:
        v1 = f"reproduced: better than top-k in {better} of {len(testable)} testable settings (worse in {worse})"
    elif better > worse:
        v1 = f"partly reproduced: better in {better}, worse in {worse}, tied in {len(testable) - better - worse} of {len(testable)}"
    else:
        v1 = f"not reproduced: better in {better}, worse in {worse}, tied in {len(testable) - better - worse} of {len(testable)}"
    m = sum(x["matches"] for x in c2)
    v2 = (
        f"reproduced: within noise of full fine-tuning in {m} of {len(c2)} settings"
        if c2 and m > len(c2) / 2
        else f"not reproduced: within noise of full fine-tuning in {m} of {len(c2)} settings"
    )
    rob = res["robustness"]
    frac = [x for x in rob if x["kind"] == "fraction" and x["value"] != 1.0]
    imb = [x for x in rob if x["kind"] == "imbalance"]

    def _rob(xs):
        if not xs:
            return None
        return {
            "mean_spearman": statistics.mean(x["spearman"] for x in xs),
            "min_spearman": min(x["spearman"] for x in xs),
            "best_layer_moved": sum(x["best_layer_moved"] for x in xs),
            "settings": len(xs),
        }

    rf, ri = _rob(frac), _rob(imb)
    ok3 = all(r is None or (r["mean_spearman"] >= 0.8 and r["best_layer_moved"] <= r["settings"] / 3) for r in (rf, ri))
    v3 = (
        ("reproduced" if ok3 else "not reproduced")
        + ": "
        + "; ".join(
            f"{name}: mean Spearman {r['mean_spearman']:.2f} (min {r['min_spearman']:.2f}), ℓ* moved in "
            f"{r['best_layer_moved']} of {r['settings']}"
            for name, r in (("scarcity", rf), ("imbalance", ri))
            if r
        )
    )
    fl = [x["flops_vs_full"] for x in c4]
    tm = [x["time_vs_full"] for x in c4 if x["time_vs_full"]]
    v4 = (
        (
            f"reproduced: training FLOPs {min(fl):.2f}–{max(fl):.2f}× and measured time {min(tm):.2f}–{max(tm):.2f}× "
            f"of full fine-tuning"
            if fl and tm and max(fl) < 1 and statistics.mean(tm) < 1
            else "not reproduced: the selections did not cost less than full fine-tuning"
        )
        if fl
        else "no runs"
    )
    return {
        "claim1": v1,
        "claim2": v2,
        "claim3": v3,
        "claim4": v4,
        "claim1_detail": c1,
        "claim2_detail": c2,
        "claim4_detail": c4,
        "claim3_detail": {"scarcity": rf, "imbalance": ri},
    }


# ------------------------------------------------------------------ the document
def write_doc(res: dict, doc_path: str, img_dir: str, command: str) -> None:
    """docs/reproduction.md and its plots, from the results dict only."""
    img = Path(img_dir)
    img.mkdir(parents=True, exist_ok=True)
    rel = Path(img_dir).resolve().relative_to(Path(doc_path).resolve().parent)
    write_plots(res, img)
    Path(doc_path).parent.mkdir(parents=True, exist_ok=True)
    Path(doc_path).write_text(report_markdown(res, command, rel))


def report_markdown(res: dict, command: str, rel: str | Path | None = None) -> str:
    """The whole report as Markdown; ``rel`` is the plots' folder relative to the document (None: no images)."""
    rows = summarize(res)
    lines = setting_lines(res, command)
    lines += ["## Verdicts", "", verdicts_markdown(res), ""]
    lines += curves_lines(res, rel)
    lines += training_lines(res, rows, rel)
    lines += robustness_lines(res, rel)
    return "\n".join(lines)


def _image(rel, alt: str, name: str) -> list[str]:
    return [] if rel is None else [f"![{alt}]({rel}/{name})", ""]


def setting_lines(res: dict, command: str) -> list[str]:
    """The title, the regenerate command and the Setting section."""
    s = res["settings"]
    return [
        "# Reproducing the paper's claims on offline data",
        "",
        "Generated by `python -m analysis reproduce` from its JSON; every number below is in that file.",
        "",
        f"Regenerate: `{command}`",
        "",
        "## Setting",
        "",
        f"- Models: {', '.join(s['models'])}. Tasks: {', '.join(s['tasks'])} (offline, see README).",
        *(
            [
                "- Plan: "
                + "; ".join(
                    f"{e[0]} on {', '.join(e[1])} with k = {', '.join(map(str, e[2] or s['ks']))}" for e in s["plan"]
                )
            ]
            if s.get("plan")
            else []
        ),
        f"- ν curves: {s['analysis_n']} stratified training texts, pooling `{s['pooling']}`, max length "
        f"{s['max_length']}, {s['bootstrap']} bootstrap resamples; ℓ* = argmin of ν over layers 1..L.",
        f"- Training: {s['steps']} steps, batch {s['batch_size']}, learning rate {s['lr']:g} (linear decay, 6 % "
        f"warm-up), AdamW — identical for every strategy; {s['n_train']} training texts, {s['eval_n']} held-out "
        f"texts from the test split; seeds {', '.join(map(str, s['seeds']))}.",
        "- Strategies: **variability** (classifier on ℓ*, layers above removed, the k layers ending at ℓ* tuned), "
        "**top** (classifier on the top layer, top k layers tuned), **full** (everything tuned).",
        *(
            [
                f"- Full fine-tuning was not run for {', '.join(s['skip_full'])} (cost); claims 2 and 4 use the "
                f"other models."
            ]
            if s.get("skip_full")
            else []
        ),
        f"- Total time of this run: {res['seconds'] / 60:.1f} min (runs found in the cache are not re-timed).",
        "",
    ]


def verdicts_markdown(res: dict) -> str:
    """The four verdicts of the results dict as a numbered Markdown list (the report's Verdicts section)."""
    v = res["verdicts"]
    return "\n".join(
        [
            f"1. *Variability-selected layers beat the same number of top layers*: **{v['claim1']}**.",
            f"2. *They often match full fine-tuning*: **{v['claim2']}**.",
            f"3. *ν is robust to data scarcity and imbalance*: **{v['claim3']}**.",
            f"4. *They cut computation*: **{v['claim4']}**.",
        ]
    )


def curves_lines(res: dict, rel=None) -> list[str]:
    """The ν per layer section: the curves plot and one table row per (model, task)."""
    lines = [
        "## ν per layer",
        "",
        *_image(rel, "curves", "repro_curves.png"),
        "| model | task | n | ν per layer (0 = embeddings) | ℓ* |",
        "|---|---|---|---|---|",
    ]
    for c in res["curves"]:
        lines.append(
            f"| {c['model']} | {c['task']} | {c['n']} | {', '.join(f'{x:.3g}' for x in c['variability'])} | "
            f"{c['best_layer']} |"
        )
    return lines


def training_lines(res: dict, rows: list[dict], rel=None) -> list[str]:
    """Claims 1, 2 and 4: the runs table, the metric-vs-parameters plot and the claim 1 and claim 4 tables."""
    v = res["verdicts"]
    lines = [
        "",
        "## Claims 1, 2 and 4: training",
        "",
        "Held-out metric (mean ± sd over seeds), trainable parameters, training FLOPs per example relative to "
        "full fine-tuning, and measured training time.",
        "",
        "| model | task | strategy | k | ℓ* | tuned | metric | mean ± sd | trainable params | FLOPs vs full | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = " (= top)" if r["identical_to_top"] else ""
        lines.append(
            f"| {r['model']} | {r['task']} | {r['strategy']}{note} | {r['k'] or '–'} | {r['classifier_layer']} | "
            f"{','.join(map(str, r['tuned_layers'])) if r['strategy'] != 'full' else 'all'} | {r['metric']} | "
            f"{r['mean']:.4f} ± {r['sd']:.4f} | {r['trainable_params']:,} | {r['flops_vs_full']:.3f} | "
            f"{r['train_seconds']:.1f} |"
        )
    lines += ["", *_image(rel, "metric vs params", "repro_metric_vs_params.png")]
    lines += [
        "Claim 1, per setting (outcome needs a difference beyond max(0.01, 2·sd/√seeds)):",
        "",
        "| model | task | k | variability | top | outcome |",
        "|---|---|---|---|---|---|",
    ]
    for x in v["claim1_detail"]:
        lines.append(
            f"| {x['model']} | {x['task']} | {x['k']} | {x['variability']:.4f} | {x['top']:.4f} | {x['outcome']} |"
        )
    lines += [
        "",
        "Claim 4, cost of the variability selection relative to full fine-tuning:",
        "",
        "| model | task | k | FLOPs vs full | measured time vs full |",
        "|---|---|---|---|---|",
    ]
    for x in v["claim4_detail"]:
        lines.append(
            f"| {x['model']} | {x['task']} | {x['k']} | {x['flops_vs_full']:.3f} | {x['time_vs_full']:.3f} |"
            if x["time_vs_full"]
            else "| – |"
        )
    return lines


def robustness_lines(res: dict, rel=None) -> list[str]:
    """Claim 3's table and plot, then the Caveats section."""
    lines = [
        "",
        "## Claim 3: robustness of ν",
        "",
        "Spearman correlation of each curve with the full-sample curve, and whether ℓ* moves.",
        "",
        "| model | task | subset | n | Spearman | ℓ* | moved |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in res["robustness"]:
        sub = f"{x['value'] * 100:g} %" if x["kind"] == "fraction" else f"imbalance {x['value']}"
        lines.append(
            f"| {x['model']} | {x['task']} | {sub} | {x['n']} | {x['spearman']:.3f} | {x['best_layer']} | "
            f"{'yes' if x['best_layer_moved'] else 'no'} |"
        )
    return lines + [
        "",
        *_image(rel, "robustness", "repro_robustness.png"),
        "## Caveats",
        "",
        "- One learning rate for all strategies (no per-strategy tuning); full fine-tuning might gain "
        "from a smaller one, partial tuning from a larger one.",
        "- Short CPU budgets: the absolute scores are below what long training reaches; the comparison "
        "is between strategies under the same budget.",
        "- Where ℓ* is the top layer, the variability selection and the top-k selection are the same "
        "model: those settings cannot test claim 1 and are reported as identical, not as wins.",
        "",
    ]


def write_plots(res: dict, img: Path) -> None:
    """repro_curves.png, repro_metric_vs_params.png and repro_robustness.png in ``img``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [(c["model"], c["task"]) for c in res["curves"]]
    for name, draw, height in (
        ("repro_curves.png", _plot_curves, 3.2),
        ("repro_metric_vs_params.png", _plot_metric_vs_params, 3.4),
        ("repro_robustness.png", _plot_robustness, 3.2),
    ):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), height), squeeze=False)
        draw(res, tasks, axes[0])
        fig.tight_layout()
        fig.savefig(img / name, dpi=110)
        plt.close(fig)


def _plot_curves(res: dict, tasks, axes) -> None:
    for ax, c in zip(axes, res["curves"]):
        ax.plot(c["layers"], c["variability"], "o-", label="ν")
        if c["band"]:
            ax.fill_between(c["layers"], c["band"]["low"], c["band"]["high"], alpha=0.25, label="5–95 % bootstrap")
        ax.axvline(c["best_layer"], ls="--", c="gray")
        ax.set_title(f"{c['model']} · {c['task']}", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel("ν")
    axes[0].legend(fontsize=8)


def _plot_metric_vs_params(res: dict, tasks, axes) -> None:
    rows = summarize(res)
    marks = {"variability": "o", "top": "s", "full": "*"}
    for ax, (model, task) in zip(axes, tasks):
        for r in rows:
            if (r["model"], r["task"]) != (model, task):
                continue
            ax.errorbar(
                r["trainable_params"],
                r["mean"],
                yerr=r["sd"],
                fmt=marks[r["strategy"]],
                ms=8,
                label=f"{r['strategy']} k={r['k']}" if r["k"] else r["strategy"],
                alpha=0.8,
            )
        ax.set_xscale("log")
        ax.set_title(f"{model} · {task}", fontsize=10)
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(next((r["metric"] for r in rows if r["task"] == task), "metric"))
    axes[-1].legend(fontsize=7, loc="lower right")


def _plot_robustness(res: dict, tasks, axes) -> None:
    for ax, (model, task) in zip(axes, tasks):
        for x in res["robustness"]:
            if (x["model"], x["task"]) != (model, task):
                continue
            lab = f"{x['value'] * 100:g}%" if x["kind"] == "fraction" else x["value"]
            ax.plot(
                range(len(x["variability"])),
                x["variability"],
                "-" if x["kind"] == "fraction" else "--",
                marker=".",
                label=str(lab),
                alpha=0.8,
            )
        ax.set_title(f"{model} · {task}", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel("ν")
        ax.legend(fontsize=7)
