"""``python -m analysis train``: partial fine-tuning from the command line."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from ..atomic import check_output, write_atomic
from ..errors import VariscopeError
from ..settings import TrainSettings, train_settings
from ..training import STRATEGIES, RunMonitor, Selection, save_run, select, train
from .common import add_data_args, config_from_args, make_cache


def register(sub) -> None:
    p = sub.add_parser("train", help="partial fine-tuning with live metrics")
    add_data_args(p)
    p.add_argument(
        "--strategy",
        default=None,
        choices=STRATEGIES,
        help="pick the selection: variability (argmin ν), top (top k) or full",
    )
    p.add_argument("--k", type=int, default=2, help="number of tuned layers for --strategy")
    p.add_argument("--classifier-layer", type=int, default=None)
    p.add_argument("--tune-layers", default=None, help="comma-separated, e.g. 3,4")
    p.add_argument("--adapter", default=None, choices=["lora"])
    p.add_argument("--lora-r", type=int, default=8)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--epochs", type=float, default=None)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-n", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--remeasure", action="store_true", help="ν before/after training on the eval texts")
    p.add_argument("--save", default=None, help="folder for weights, results and a LoraConfig snippet")
    p.add_argument("--overwrite", action="store_true", help="replace what a non-empty --save folder holds")
    p.add_argument("--log", default=None, help="live metrics as JSON lines")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_train)


def resolve_selection(a, cfg, ts: TrainSettings, cache=None) -> tuple[Selection, str | None]:
    """Selection from --strategy or from --classifier-layer/--tune-layers.

    The variability strategy's curve goes through ``cache`` (``--cache-dir``, ``--no-cache``).
    """
    if a.strategy:
        from ..models import describe, resolve_model

        L = describe(resolve_model(cfg.model, revision=cfg.revision))["layers"]
        curve = None
        if a.strategy == "variability":
            from ..pipeline import compute_curve

            curve = compute_curve(cfg, cache=cache, use_cache=not getattr(a, "no_cache", False))[0].variability
            L = len(curve) - 1
        return select(a.strategy, L, ts.k, curve, adapter=a.adapter, lora_r=ts.lora_r), a.strategy
    if ts.classifier_layer is None:
        raise VariscopeError("give --classifier-layer K (and --tune-layers) or --strategy variability|top|full")
    try:
        tuned = tuple(int(x) for x in a.tune_layers.split(",")) if a.tune_layers else (ts.classifier_layer,)
    except ValueError:
        raise VariscopeError(f"--tune-layers must be comma-separated layer numbers, got '{a.tune_layers}'") from None
    return Selection(ts.classifier_layer, tuned, adapter=a.adapter, lora_r=ts.lora_r), None


def check_train_outputs(a) -> None:
    """--save, --log and --json refused before any work (a non-empty --save folder needs --overwrite)."""
    check_output(a.save, folder=True, overwrite=a.overwrite, make_parents=True, what="--save")
    check_output(a.log, what="--log")
    check_output(a.json, what="--json")
    if a.json and a.log and Path(a.json).resolve() == Path(a.log).resolve():
        raise VariscopeError("--json and --log must be different files")


def cmd_train(a) -> int:
    cfg = config_from_args(a)
    ts = train_settings(vars(a))  # every number checked before any data or model is loaded
    check_train_outputs(a)
    cache = make_cache(a)
    sel, strategy = resolve_selection(a, cfg, ts, cache)
    tc = ts.config(cfg, sel, remeasure=a.remeasure, strategy=strategy)
    from tqdm import tqdm

    from ..models import describe, resolve_model

    n_layers = describe(resolve_model(cfg.model, revision=cfg.revision))["layers"]
    if n_layers:
        sel.check(int(n_layers))  # fail before any work
    if a.log:
        write_atomic(a.log, "")
    monitor = RunMonitor(log_path=a.log)
    bar = {}

    class _Watch(threading.Thread):
        def run(self):
            while monitor.running:
                p = monitor.snapshot()["progress"]
                if p["max_steps"]:
                    if "b" not in bar:
                        bar["b"] = tqdm(
                            total=p["max_steps"], desc="training", unit="step", file=sys.stderr, leave=False
                        )
                    bar["b"].n = p["step"]
                    bar["b"].refresh()
                time.sleep(0.5)

    _Watch(daemon=True).start()
    try:
        result, model = train(tc, monitor)
    finally:
        if "b" in bar:
            bar["b"].close()
    if a.save:
        save_run(result, a.save, model, overwrite=a.overwrite)
    out = result.to_dict()
    ev = ", ".join(f"{k} {v:.4f}" for k, v in out["eval"].items())
    print(
        f"{out['label']}: {out['steps']} steps in {out['train_seconds']:.1f}s ({out['steps_per_second']:.2f} steps/s); "
        f"held-out {ev}; trainable {out['trainable_params']:,} of {out['total_params']:,} params; "
        f"FLOPs vs full {out['flops_vs_full']:.2f}" + (" (stopped)" if out["stopped"] else "")
    )
    if a.json:
        write_atomic(a.json, json.dumps(out, indent=2))
    return 0
