"""``python -m analysis sweep``: train every layer, then score every layer selector against that truth."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from analysis.cli.common import add_data_args, config_from_args, make_cache
from analysis.errors import VariscopeError
from analysis.store.atomic import check_output, write_atomic


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise VariscopeError(f"{what} must be comma-separated numbers, got '{text}'") from None


def cmd_sweep(a) -> int:
    from analysis.cli.common import prepare_model
    from analysis.models.load import describe, resolve_model
    from analysis.sweep.config import SweepConfig, parse_layers
    from analysis.sweep.run import run_sweep
    from analysis.sweep.selectors import selector_inputs_by_representation

    cfg = config_from_args(a)
    check_output(a.json, what="--json")
    cache = make_cache(a)
    prepare_model(cfg.model, cache)
    L = int(describe(resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache.root))["layers"])
    seeds = tuple(int(s) for s in _floats(a.seeds, "--seeds"))
    sweep_cfg = SweepConfig(
        layers=parse_layers(a.layers or f"1-{L}", L),
        k=a.k,
        seeds=seeds,
        steps=a.steps,
        batch_size=a.train_batch,
        eval_n=a.eval_n,
        lr_grid=_floats(a.lr_grid, "--lr-grid"),
        lr_steps=a.lr_steps,
    )
    sweep_cfg.check(L)
    use = not a.no_cache
    record = run_sweep(
        cfg,
        sweep_cfg,
        cache=cache,
        use_cache=use,
        selector_table=lambda: selector_inputs_by_representation(cfg, cache, use),
    )
    print(f"oracle layer {record['oracle_layer']}, tied {record['tied_layers']} ({record['tied_rule']})")
    for name, s in record["selectors"].items():
        rho = "-" if s["spearman"] is None else f"{s['spearman']:.2f}"
        regret = "-" if s["regret"] is None else f"{s['regret']:.4f}"
        print(f"  {name:<16} layer {s['layer']!s:>3}  regret {regret:>7}  spearman {rho}")
    for line in representation_lines(record):
        print(line)
    if a.json:
        write_atomic(a.json, json.dumps(record, indent=2))
    return 0


def representation_lines(record: dict) -> list[str]:
    """One line per representation scored: ν's regret and Spearman, the mean over selectors (or why only one)."""
    from analysis.sweep.evidence import representation_rows

    rows = representation_rows(record)
    if len(rows) < 2:
        return [f"representation: {record.get('representation_note', 'one')}"]
    return [
        f"  {x['representation']:<10} ν regret {_num(x['nu_regret'])}, ν spearman {_num(x['nu_spearman'], 2)}; "
        f"over selectors mean regret {_num(x['mean_regret'])}, mean spearman {_num(x['mean_spearman'], 2)}"
        for x in rows
    ]


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def register(sub) -> None:
    from analysis.sweep.config import LR_GRID, LR_STEPS, SweepConfig

    p = sub.add_parser("sweep", help="train every layer (seeds, learning-rate grid) and score every layer selector")
    add_data_args(p)
    d = {f.name: f.default for f in fields(SweepConfig)}
    p.add_argument("--train-batch", type=int, default=d["batch_size"], help="training batch (default %(default)s)")
    p.add_argument("--layers", default=None, help="classifier layers, e.g. 1-18 or 2,4,6 (default all)")
    p.add_argument("--k", type=int, default=d["k"], help="blocks ending at the classifier layer that train (default 1)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2); the data sample stays --seed")
    p.add_argument("--steps", type=int, default=d["steps"], help="steps of every final run (default 200)")
    p.add_argument("--eval-n", type=int, default=d["eval_n"], help="held-out texts (default 600)")
    p.add_argument("--lr-grid", default=",".join(f"{x:g}" for x in LR_GRID), help="learning rates tried (seed 0)")
    p.add_argument("--lr-steps", type=int, default=LR_STEPS, help=f"steps of each grid run (default {LR_STEPS})")
    p.add_argument("--json", default=None)
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sweep)
