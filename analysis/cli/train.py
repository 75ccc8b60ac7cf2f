"""``python -m analysis train``: partial fine-tuning from the command line."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from ..atomic import write_atomic
from ..errors import VariscopeError
from ..training import STRATEGIES, RunMonitor, Selection, TrainConfig, save_run, select, train
from .common import add_data_args, config_from_args


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
    p.add_argument("--log", default=None, help="live metrics as JSON lines")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_train)


def resolve_selection(a, cfg) -> tuple[Selection, str | None]:
    """Selection from --strategy or from --classifier-layer/--tune-layers."""
    if a.strategy:
        from ..models import describe, resolve_model

        L = describe(resolve_model(cfg.model))["layers"]
        curve = None
        if a.strategy == "variability":
            from ..pipeline import compute_curve

            curve = compute_curve(cfg)[0].variability
            L = len(curve) - 1
        return select(a.strategy, L, a.k, curve, adapter=a.adapter, lora_r=a.lora_r), a.strategy
    if a.classifier_layer is None:
        raise VariscopeError("give --classifier-layer K (and --tune-layers) or --strategy variability|top|full")
    try:
        tuned = tuple(int(x) for x in a.tune_layers.split(",")) if a.tune_layers else (a.classifier_layer,)
    except ValueError:
        raise VariscopeError(f"--tune-layers must be comma-separated layer numbers, got '{a.tune_layers}'") from None
    return Selection(a.classifier_layer, tuned, adapter=a.adapter, lora_r=a.lora_r), None


def cmd_train(a) -> int:
    cfg = config_from_args(a)
    sel, strategy = resolve_selection(a, cfg)
    if a.log:
        Path(a.log).write_text("")
    monitor = RunMonitor(log_path=a.log)
    tc = TrainConfig(
        cfg,
        sel,
        steps=a.steps if a.steps or a.epochs else 200,
        epochs=a.epochs,
        lr=a.lr,
        batch_size=a.batch_size,
        eval_n=a.eval_n,
        eval_every=a.eval_every,
        seed=a.seed,
        remeasure=a.remeasure,
        strategy=strategy,
    )
    from tqdm import tqdm

    from ..models import describe, resolve_model

    n_layers = describe(resolve_model(cfg.model, revision=cfg.revision))["layers"]
    if n_layers:
        sel.check(int(n_layers))  # fail before any work
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
        save_run(result, a.save, model)
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
