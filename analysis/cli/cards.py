"""``python -m analysis cards``: ν beside a linear probe, a kNN score, gradient signal and cost, per layer."""

from __future__ import annotations

import argparse
import os
import time

from analysis.cli.common import add_data_args, config_from_args, make_cache, tqdm_progress
from analysis.errors import VariscopeError
from analysis.settings import check_bootstrap
from analysis.store.atomic import check_output, write_atomic
from analysis.store.jsonio import dumps, stamp


def print_table(cards) -> None:
    from analysis.cards.scores import agreement_words
    from analysis.selectors import HEADERS, STATE_SELECTORS, per_layer_table

    cols = [("nu", "variability", "{:>10.4g}"), ("probe", "probe_accuracy", "{:>7.3f}")]
    cols += [("F1", "probe_macro_f1", "{:>7.3f}"), ("kNN", "knn_accuracy", "{:>7.3f}")]
    cols += [("params", "params_kept", "{:>9.2e}"), ("FLOPs", "flops_per_example", "{:>9.2e}")]
    if cards.grad_norm is not None:
        cols.append(("RGN", "grad_norm", "{:>9.2e}"))
    # the state selectors, a column each, as the Layers page shows them (ν standardised as ν, not −ν)
    table, picks = per_layer_table(cards)
    extra = {HEADERS[n]: [r[HEADERS[n]] for r in table] for n in STATE_SELECTORS if HEADERS[n] in table[0]}
    widths = [len(fmt.format(1.0)) for _, _, fmt in cols] + [max(9, len(h)) for h in extra]
    heads = [h for h, _, _ in cols] + list(extra)
    print(f"{'layer':>5}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    best, probe_best = cards.recommended_layer, cards.probe_best_layer
    for i, layer in enumerate(cards.layers):
        vals = [fmt.format(getattr(cards, attr)[i]) for _, attr, fmt in cols]
        vals += [f"{'-' if v[i] is None else f'{v[i]:.3g}':>{max(9, len(h))}}" for h, v in extra.items()]
        row = f"{layer:>5}  " + "  ".join(vals)
        notes = (["recommended (argmin nu)"] if layer == best else []) + (["best probe"] if layer == probe_best else [])
        print(row + ("   <- " + ", ".join(notes) if notes else ""))
    print(agreement_words(cards.rank_agreement))
    print("each selector picks: " + ", ".join(f"{n} {l}" for n, l in picks.items() if l is not None))


def _states(a, cfg, cache):
    """The states the cards run on: all of them (disk cache), or with --stream a seeded sample of --keep."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise VariscopeError("cards run in one process; under torchrun use curve --stream")
    if not a.stream:
        from analysis.pipeline import get_states

        if a.keep is not None:
            raise VariscopeError("--keep needs --stream (without it the cards use every text)")
        return get_states(cfg, cache=cache, use_cache=not a.no_cache, progress=tqdm_progress("extracting"))
    from analysis.settings import DEFAULT_KEEP
    from analysis.stream.kept import stream_kept

    keep = DEFAULT_KEEP if a.keep is None else a.keep
    if keep < 1:
        raise VariscopeError(f"--keep must be at least 1, got {keep}")
    if keep < 2 * a.folds:  # known before the stream: the probe needs --folds states of every class
        raise VariscopeError(
            f"--keep {keep} is too few states for a {a.folds}-fold probe, which needs {a.folds} texts of every "
            f"class: use --keep {2 * a.folds} or more for two classes (more for more or unequal classes)"
        )
    return stream_kept(cfg, keep=keep, progress=tqdm_progress("streaming"), cache=cache, use_cache=not a.no_cache)


def cmd_cards(a) -> int:
    from analysis.cards.scores import CardsConfig
    from analysis.pipeline import concrete
    from analysis.records import cards_record
    from analysis.stream.kept import cards_of, kept_fields, total_texts

    cfg = config_from_args(a)
    check_output(a.json, what="--json")
    check_output(a.csv, what="--csv")
    cards_cfg = CardsConfig(
        folds=a.folds, k=a.k, grad=a.grad, bootstrap=check_bootstrap(a.bootstrap), max_iter=a.max_iter
    )
    cards_cfg.check()
    cache = make_cache(a)
    t0 = time.perf_counter()
    states_res = _states(a, cfg, cache)
    cards_cfg.validate(states_res.labels, kept=a.stream)
    cards = cards_of(
        cfg, cards_cfg, states_res, cache=cache, use_cache=not a.no_cache, progress=tqdm_progress("cards", unit="layer")
    )
    n, k = total_texts(states_res), kept_fields(states_res).get("sample_size")
    out = cards_record(concrete(cfg, cache_root=cache.root), cards, n, n_kept=k)  # "auto" resolved, as its states
    out.update(
        cache_hit=cards.cache_hit, states_cache_hit=states_res.cache_hit, seconds=round(time.perf_counter() - t0, 4)
    )
    probe = f"{a.folds}-fold probe" + (f" on a seeded sample of {k} of {n} texts (nu from all {n})" if k else "")
    print(
        f"{cfg.model} on {cfg.task.label()} ({cfg.task.split}), n={n}, {probe}, k={a.k}, "
        f"{'cache hit' if cards.cache_hit else 'computed'} in {out['seconds']:.2f}s"
    )
    print_table(cards)
    if a.json:
        write_atomic(a.json, dumps(stamp(out, device=out.get("device"), dtype=out.get("dtype")), indent=2))
    if a.csv:
        write_atomic(a.csv, cards.to_csv())
    return 0


def register(sub) -> None:
    from analysis.settings import CURVE_DEFAULTS, DEFAULT_KEEP

    c = sub.add_parser("cards", help="per layer: nu, linear probe, kNN accuracy, cost (and gradient norms)")
    add_data_args(c)
    c.add_argument("--folds", type=int, default=5, help="stratified folds of the linear probe (default 5)")
    c.add_argument("--k", type=int, default=10, help="neighbours of the leave-one-out kNN score (default 10)")
    c.add_argument("--grad", action="store_true", help="also relative gradient norms per block (a backward pass)")
    c.add_argument(
        "--bootstrap", type=int, default=CURVE_DEFAULTS["bootstrap"], help="B resamples for a 5-95%% band of nu"
    )
    c.add_argument("--max-iter", type=int, default=200, help="iterations of the probe's LogisticRegression")
    c.add_argument(
        "--stream",
        action="store_true",
        help="nu from running statistics over every text; probe, kNN and band on a seeded sample (--keep)",
    )
    c.add_argument(
        "--keep",
        type=int,
        default=CURVE_DEFAULTS["keep"],
        help=f"with --stream: texts in the seeded sample (default {DEFAULT_KEEP})",
    )
    c.add_argument("--json", default=None)
    c.add_argument("--csv", default=None)
    c.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_cards)
