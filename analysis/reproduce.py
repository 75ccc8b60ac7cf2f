"""``python -m analysis reproduce``: test the paper's four claims on offline data.

1. tuning the k layers ending at the low-ν layer ℓ* beats tuning the top k layers;
2. it often matches full fine-tuning;
3. ν is robust to data scarcity and class imbalance;
4. it cuts computation.

Beside each ν curve, the layer cards of the same states (:mod:`analysis.cards`) ask
whether ℓ* is the layer a linear probe would pick ("cards" records; :func:`add_cards`
adds them to an older results dict without re-running anything else).

Every strategy gets the same training budget, learning rate, batch size and
seeds. Finished runs are cached on disk (kind "runs"), so an interrupted run
resumes. The statistics and verdicts are in :mod:`analysis.reproduce_verdicts`;
``write_doc`` (:mod:`analysis.reproduce_report`) renders docs/reproduction.md (and
plots) from the JSON alone, so the document's numbers are the JSON's numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

from .cache import DiskCache, make_key
from .reproduce_verdicts import cards_verdict, verdicts

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import AnalysisConfig, StatesResult
    from .training.run import TrainConfig, TrainOutput
    from .training.selection import Selection
    from .variability import CurveResult

REPRO_VERSION = 2
# The fields of a RunResult that a "runs" record keeps (plus "metric_value", the main metric).
_RECORD_KEYS = (
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

    def pairs(self) -> list[tuple[str, str]]:
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


def _acfg(rc: ReproConfig, model: str, task: str, n: int, seed: int, **sampling) -> AnalysisConfig:
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


# ------------------------------------------------------------------ the experiments
def run(rc: ReproConfig, *, cache: DiskCache | None = None, log: Callable[[str], None] = print) -> dict:
    """Run every experiment (resuming from cached runs) and return the results dict."""
    from .models import describe, resolve_model

    cache = cache or DiskCache()
    settings = {
        **asdict(rc),
        "models": sorted({m for m, _ in rc.pairs()}),
        "tasks": list(dict.fromkeys(t for _, t in rc.pairs())),
    }
    started = time.time()
    curves: list[dict] = []
    cards: list[dict] = []
    runs: list[dict] = []
    robustness: list[dict] = []
    for model, task in rc.pairs():
        n_layers = describe(resolve_model(model))["layers"]
        curve = _curve(rc, model, task, cache)
        curves.append(curve)
        log(f"[{model}/{task}] ν curve over {curve['n']} texts: ℓ* = {curve['best_layer']} of {n_layers}")
        cards.append(_cards(rc, model, task, cache, log))
        robustness += _robustness(rc, model, task, curve, cache)  # claim 3
        runs += _training_runs(rc, model, task, n_layers, curve["variability"], cache, log)  # claims 1, 2, 4
    out: dict = {"settings": settings, "curves": curves, "cards": cards, "runs": runs, "robustness": robustness}
    out["seconds"] = time.time() - started
    out["verdicts"] = verdicts(out)
    return out


def _curve(rc: ReproConfig, model: str, task: str, cache: DiskCache) -> dict:
    """The ν curve of (model, task) on ``rc.analysis_n`` texts, as the results' "curves" record."""
    from .pipeline import compute_curve
    from .selection import recommend_layer

    curve, st = compute_curve(_acfg(rc, model, task, rc.analysis_n, 0), cache=cache, bootstrap=rc.bootstrap)
    return {
        "model": model,
        "task": task,
        "layers": curve.layers,
        "variability": curve.variability,
        "band": curve.to_dict()["band"],
        "best_layer": recommend_layer(curve.variability),
        "n": len(st.labels),
        "counts": curve.counts,
    }


def _cards(rc: ReproConfig, model: str, task: str, cache: DiskCache, log: Callable[[str], None]) -> dict:
    """The "cards" record of (model, task): the layer cards of the curve's states (same config, so cached)."""
    from .cards import CardsConfig
    from .cards_model import compute_cards

    cc = CardsConfig()
    cards, st = compute_cards(_acfg(rc, model, task, rc.analysis_n, 0), cc, cache=cache)
    rec = {
        "model": model,
        "task": task,
        "n": int(len(st.labels)),
        "layers": cards.layers,
        "variability": cards.variability,
        "probe_accuracy": cards.probe_accuracy,
        "knn_accuracy": cards.knn_accuracy,
        "rank_agreement": cards.rank_agreement,
        "recommended_layer": cards.recommended_layer,
        "probe_best_layer": cards.probe_best_layer,
        "same_layer": cards.recommended_layer == cards.probe_best_layer,
        "probe": {k: getattr(cc, k) for k in ("folds", "k", "seed", "max_iter", "C")},
    }
    rho = "undefined" if rec["rank_agreement"] is None else f"{rec['rank_agreement']:.2f}"
    log(
        f"[{model}/{task}] cards: ℓ* = {rec['recommended_layer']}, probe's best layer = {rec['probe_best_layer']}, "
        f"Spearman(−ν, probe accuracy) = {rho}"
    )
    return rec


def config_from_settings(settings: dict) -> ReproConfig:
    """The ReproConfig of a results dict's "settings" (lists back to tuples; unknown keys ignored)."""

    def tup(x):
        return tuple(tup(y) for y in x) if isinstance(x, list) else x

    names = {f.name for f in fields(ReproConfig)}
    return ReproConfig(**{k: tup(v) for k, v in settings.items() if k in names})


def add_cards(
    res: dict,
    *,
    cache: DiskCache | None = None,
    log: Callable[[str], None] = print,
    save: Callable[[dict], None] | None = None,
    device: str | None = None,
) -> dict:
    """Add the missing "cards" records of ``res``'s curves (with its stored settings) and their verdict.

    Records already there are kept; a model that is not installed gets ``{"not_computed": ...}``
    (tried again next time). Trains nothing. ``save(res)`` is called after each new record, so an
    interrupted run keeps what it did (the cards are also in the disk cache); ``device`` overrides the
    stored one (it does not change the states' cache key). Returns ``res``, changed in place.
    """
    from .registry import REGISTRY, is_installed

    cache = cache or DiskCache()
    rc = config_from_settings(res["settings"])
    rc = rc if device is None else replace(rc, device=device)
    have = {(c["model"], c["task"]): c for c in res.get("cards", []) if "not_computed" not in c}
    cards = []
    for c in res["curves"]:
        model, task = c["model"], c["task"]
        rec = have.get((model, task))
        if rec is None and model in REGISTRY and not is_installed(REGISTRY[model]):
            log(f"[{model}/{task}] cards not computed: {model} is not installed")
            rec = {"model": model, "task": task, "not_computed": "model not installed"}
        elif rec is None:
            rec = _cards(rc, model, task, cache, log)
            if rec["n"] != c["n"] or rec["recommended_layer"] != c["best_layer"]:
                log(f"[{model}/{task}] warning: the cards' states differ from the curve's (n or ℓ*)")
        cards.append(rec)
        if save is not None and rec is not have.get((model, task)):
            done = {(x["model"], x["task"]) for x in cards}
            rest = [x for x in res.get("cards", []) if (x["model"], x["task"]) not in done]
            save({**res, "cards": cards + rest, "verdicts": {**res["verdicts"], "cards": cards_verdict(cards + rest)}})
    res["cards"] = cards
    res["verdicts"]["cards"] = cards_verdict(cards)
    return res


def _robustness(rc: ReproConfig, model: str, task: str, full: dict, cache: DiskCache) -> list[dict]:
    """Claim 3: the curve on fewer texts (``rc.fractions``) and, for two classes, on imbalanced samples."""
    from .pipeline import compute_curve

    out = []
    for frac in rc.fractions:
        n = max(4 * len(full["counts"]), int(round(rc.analysis_n * frac)))
        c2, s2 = compute_curve(_acfg(rc, model, task, n, 0), cache=cache, bootstrap=rc.bootstrap)
        out.append(_robust(model, task, "fraction", frac, c2, s2, full))
    if len(full["counts"]) == 2:
        for ratio in rc.imbalances:
            c2, s2 = compute_curve(
                _acfg(rc, model, task, rc.analysis_n, 0, imbalance=(1.0, float(ratio))),
                cache=cache,
                bootstrap=rc.bootstrap,
            )
            out.append(_robust(model, task, "imbalance", f"1:{ratio}", c2, s2, full))
    return out


def _robust(
    model: str, task: str, kind: str, value: float | str, curve: CurveResult, st: StatesResult, full: dict
) -> dict:
    """One robustness record: ``curve`` (a subsample's) against ``full``, the full-sample "curves" record."""
    from scipy.stats import spearmanr

    from .selection import recommend_layer

    rho = float(spearmanr(curve.variability, full["variability"]).statistic)
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
        "best_layer_moved": b != full["best_layer"],
    }


def _training_plans(
    rc: ReproConfig, model: str, n_layers: int, nu: list[float]
) -> list[tuple[str, int | None, int, Selection]]:
    """(strategy, k, seed, selection) of every run of ``model``: per seed, full, then variability/top per k."""
    from .training import select

    plans: list[tuple[str, int | None, int, Selection]] = []
    for seed in rc.seeds:
        if model not in rc.skip_full:
            plans.append(("full", None, seed, select("full", n_layers, 1)))
        for k in rc.ks_for(model):
            plans.append(("variability", k, seed, select("variability", n_layers, k, nu)))
            plans.append(("top", k, seed, select("top", n_layers, k)))
    return plans


def _training_runs(
    rc: ReproConfig,
    model: str,
    task: str,
    n_layers: int,
    nu: list[float],
    cache: DiskCache,
    log: Callable[[str], None],
) -> list[dict]:
    """Claims 1, 2 and 4: the "runs" records of (model, task), each from the cache or trained now."""
    from .training import TrainConfig, select, train

    runs = []
    for strategy, k, seed, sel in _training_plans(rc, model, n_layers, nu):
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
        same = strategy == "variability" and k is not None and sel == select("top", n_layers, k)
        runs.append(
            {"task": task, "model": model, "strategy": strategy, "k": k, "seed": seed, "identical_to_top": same, **rec}
        )
    return runs


def _cached_train(
    tc: TrainConfig, cache: DiskCache, log: Callable[[str], None], train: Callable[[TrainConfig], TrainOutput]
) -> dict:
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
    rec = {k: r[k] for k in _RECORD_KEYS}
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
