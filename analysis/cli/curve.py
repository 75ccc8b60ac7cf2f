"""``python -m analysis curve``: ν per layer, its band and the recommended layer (in memory or streamed)."""

from __future__ import annotations

import argparse
import sys
import time

from analysis.cli.common import add_data_args, config_from_args, make_cache, prepare_model, tqdm_progress
from analysis.errors import VariscopeError
from analysis.settings import DEFAULT_KEEP, CurveSettings, curve_settings
from analysis.store.atomic import check_output, write_atomic
from analysis.store.jsonio import dumps, stamp


def cmd_curve(a) -> int:
    from analysis.pipeline import concrete
    from analysis.recommend import recommend_layer
    from analysis.records import curve_record, no_majority_line, share_line

    cfg = config_from_args(a)
    o = curve_settings(vars(a))  # bootstrap, tolerance, keep and memory budget checked once, there
    check_output(a.json, what="--json")
    check_output(a.csv, what="--csv")
    cache = make_cache(a)
    t0 = time.perf_counter()
    curve, n, extra = _curve_stream(a, o, cfg, cache) if o.stream else _curve_states(a, o, cfg, cache)
    if extra.get("rank", 0) != 0:
        return 0  # one process prints and writes
    band_note = extra.pop("band_note", None)
    best = recommend_layer(curve.variability, rule=o.rule, tolerance=o.tolerance)
    out = {
        # "auto" resolved where this run found its model (prepared by now): the record names the states
        **curve_record(
            concrete(cfg, cache_root=cache.root),
            curve.to_dict(),
            n,
            best,
            o.rule,
            mode=extra["mode"],
            world_size=extra["world_size"],
        ),
        "weighting": o.weighting,
        **extra,
        "seconds": {
            **{k: round(v, 4) for k, v in extra["seconds"].items()},
            "total": round(time.perf_counter() - t0, 4),
        },
    }
    out.pop("rank", None)
    for w in out["warnings"]:
        print(f"note: {w}", file=sys.stderr)
    how = "cache hit" if out["cache_hit"] else f"streamed ({out['mode']})" if o.stream else "computed"
    print(
        f"{cfg.model} on {cfg.task.label()} ({cfg.task.split}), n={out['n']}, pooling={cfg.pooling}, "
        f"{how} in {out['seconds']['total']:.2f}s"
        + (f" by {out['world_size']} processes" if out["world_size"] > 1 else "")
    )
    if band_note:
        print(band_note)
    print(f"{'layer':>5}  {'nu':>12}" + (f"  {'band':>25}" if curve.band else ""))
    for i, l in enumerate(curve.layers):
        row = f"{l:>5}  {curve.variability[i]:>12.5g}"
        if curve.band:
            row += f"  [{curve.band[0][i]:>11.5g}, {curve.band[1][i]:>11.5g}]"
        print(row + ("   <- recommended" if l == best else ""))
    share = curve.argmin_share if o.rule == "argmin" else curve.plateau_share
    for line in (share_line(share), no_majority_line(share)):
        if line:
            print(line + (f" (of the {out['keep']} kept states)" if o.stream and line.startswith("ℓ*") else ""))
    if a.json:
        write_atomic(a.json, dumps(stamp(out, device=out.get("device"), dtype=out.get("dtype")), indent=2))
    if a.csv:
        write_atomic(a.csv, curve.to_csv())
    return 0


def _curve_states(a, o: CurveSettings, cfg, cache):
    """The default path: pooled states (from the cache or one pass), then ν. Returns (curve, n, JSON fields)."""
    import os

    from analysis.pipeline import compute_curve

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise VariscopeError("several processes (torchrun) need --stream")
    prepare_model(cfg.model, cache)
    curve, states_res = compute_curve(
        cfg,
        cache=cache,
        use_cache=not a.no_cache,
        bootstrap=o.bootstrap,
        weighting=o.weighting,
        progress=tqdm_progress("extracting"),
    )
    extra = {"mode": "states", "world_size": 1, "cache_hit": states_res.cache_hit, "cache_key": states_res.key}
    return curve, len(states_res.labels), {**extra, **_run_info(states_res.info), "seconds": states_res.seconds}


def _curve_stream(a, o: CurveSettings, cfg, cache):
    """--stream: statistics instead of states, sharded over torchrun's processes. Returns (curve, n, JSON fields).

    Every process joins each step's ok/failed exchange, so a failure anywhere is one error line
    (printed by rank 0; the others exit 1 silently) instead of a hang. Rank 0 alone reads and
    writes the cache.
    """
    from analysis.distributed import RankFailure, join, leave

    rank, world = join(cfg.device)
    if world == 1:
        return _stream_steps(a, o, cfg, cache, rank, world)
    try:
        out = _stream_steps(a, o, cfg, cache, rank, world)
    except RankFailure as e:  # every process raised it: rank 0 prints, then all leave together
        if rank == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        leave(wait=True)  # nobody exits (and gets the others killed) before the line is out
        raise SystemExit(2 if rank == 0 else 1) from None
    except VariscopeError:
        leave(wait=False)
        if rank != 0:
            raise SystemExit(1) from None  # rank 0 prints the one error line
        raise
    except BaseException:
        leave(wait=False)
        raise
    leave(wait=True)
    return out


def _stream_steps(a, o: CurveSettings, cfg, cache, rank: int, world: int):
    from analysis.distributed import collective, on_rank0
    from analysis.stream.curve import stream_curve
    from analysis.stream.curvecache import StreamSettings, load_stream, save_stream, stream_key

    keep = DEFAULT_KEEP if o.keep is None else o.keep
    how = StreamSettings(mode=o.stream_mode or "auto", keep=keep, weighting=o.weighting, bootstrap=o.bootstrap)
    budget = None if o.memory_budget is None else int(o.memory_budget * 2**20)
    use_cache = not a.no_cache

    def look() -> tuple:
        if rank != 0:
            return None, None, None
        prepare_model(cfg.model, cache)
        if not use_cache:
            return None, None, None
        key, conf = stream_key(cfg, how, cache_root=cache.root)
        return key, conf, load_stream(cache, key)

    key, conf, hit = collective(look, world)
    if on_rank0(lambda: hit is not None, rank, world):  # every process learns whether rank 0 has it
        if rank != 0:
            return None, 0, {"rank": rank, "seconds": {}}
        res = hit
        extra = {"mode": res["mode"], "world_size": res["world_size"], "cache_hit": True, "cache_key": key}
        extra.update(_run_info(res["info"]), seconds={"total": 0.0}, rank=0)
        return res["curve"], res["n"], {**extra, **_band_fields(res["curve"], res["band_sample"], res["n"])}
    res = stream_curve(
        cfg,
        rank=rank,
        world_size=world,
        mode=how.mode,
        memory_budget=budget,
        bootstrap=o.bootstrap,
        keep=keep,
        weighting=o.weighting,
        progress=tqdm_progress("streaming") if rank == 0 else None,
        cache_root=cache.root,
    )
    if use_cache:  # rank 0 writes; a failure there is agreed on like any other
        collective(lambda: save_stream(cache, key, conf, res) if rank == 0 and key is not None else None, world)
    extra = {"mode": res.mode, "world_size": world, "rank": rank, "cache_hit": False, "cache_key": key}
    fields = {**extra, **_run_info(res.info), "seconds": res.seconds}
    return res.curve, res.n, {**fields, **_band_fields(res.curve, res.n_kept, res.n)}


def _band_fields(curve, k: int, n: int) -> dict:
    """JSON fields (and the printed note) saying that a streamed curve's band comes from its state sample."""
    out: dict = {"keep": k}
    if curve.band:
        b = curve.settings.get("bootstrap", 0)
        out["band_from"] = f"state sample of {k} states"
        out["shares_from"] = f"the {k} kept states: argmin_share and plateau_share describe them, not all {n}"
        out["band_note"] = (
            f"band: the relative 5-95% spread of {b} bootstrap resamples of a sample of {k} states,"
            f" centred on nu, which itself uses all {n}"
        )
    return out


def _run_info(info: dict) -> dict:
    return {"device": info.get("device"), "dtype": info.get("dtype"), "warnings": info.get("warnings", [])}


def register(sub) -> None:
    from analysis.recommend import RULES
    from analysis.settings import CURVE_DEFAULTS, DEFAULT_BOOTSTRAP, DEFAULT_KEEP
    from analysis.stream.twopass import MODES
    from analysis.variability import WEIGHTINGS

    d = CURVE_DEFAULTS
    c = sub.add_parser("curve", help="variability ratio per layer")
    add_data_args(c)
    c.add_argument(
        "--bootstrap",
        type=int,
        default=d["bootstrap"],
        help=f"B resamples for a 5-95%% band and the ℓ* shares (default {DEFAULT_BOOTSTRAP})",
    )
    c.add_argument("--weighting", default=d["weighting"], choices=WEIGHTINGS)
    c.add_argument("--rule", default=d["rule"], choices=RULES)
    c.add_argument("--tolerance", type=float, default=d["tolerance"], help="plateau rule: %% above the minimum")
    c.add_argument(
        "--stream",
        action="store_true",
        help="per-layer statistics instead of the states (memory independent of n); a data file or HF dataset "
        "is read in chunks; under torchrun the processes share the sample",
    )
    c.add_argument(
        "--stream-mode",
        default=d["stream_mode"],
        choices=MODES,
        help="with --stream: one pass with d×d statistics, two passes with C×d ones, or auto (by --memory-budget)",
    )
    c.add_argument(
        "--memory-budget",
        type=float,
        default=d["memory_budget"],
        help="with --stream-mode auto: MB the statistics may use (default half the available memory)",
    )
    c.add_argument(
        "--keep",
        type=int,
        default=d["keep"],
        help=f"with --stream: states kept in a seeded sample, for the bootstrap band (default {DEFAULT_KEEP})",
    )
    c.add_argument("--json", default=None)
    c.add_argument("--csv", default=None)
    c.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_curve)
