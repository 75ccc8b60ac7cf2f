"""``python -m analysis reproduce``: test the paper's claims on offline data.

One command, resumable: every training run is cached (kind "runs"); the JSON and the
document are rewritten after each (model, task), and the records of models that this
invocation does not run are kept from the existing ``--json`` (``--fresh`` drops them).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from analysis.cli.common import make_cache
from analysis.errors import VariscopeError
from analysis.reproduce.report import write_doc
from analysis.reproduce.restore import restore_runs
from analysis.reproduce.run import (
    GEMMA,
    QUICK,
    ReproConfig,
    add_cards,
    add_robustness,
    finish,
    merge,
    migrate,
    revive,
    run,
    with_records_of,
)
from analysis.reproduce.runs import plan_estimate
from analysis.settings import DEFAULTS
from analysis.store.atomic import check_output, path_lock, write_atomic
from analysis.store.jsonio import dumps, stamp

_INTS = ("steps", "n_train", "eval_n", "analysis_n", "max_length", "bootstrap", "batch_size", "lr_steps")


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="test the paper's claims on offline data")
    p.add_argument(
        "--quick", action="store_true", help="one task, one seed, few steps (its time estimate is printed first)"
    )
    p.add_argument(
        "--models",
        "--model",
        default=None,
        help="comma-separated (default minilm, plus mpnet if installed); gemma3-270m alone uses its own "
        "defaults (3 tasks, k = 1..3, 3 seeds, learning-rate grid, max length 128)",
    )
    p.add_argument("--tasks", default=None)
    p.add_argument(
        "--plan",
        default=None,
        help="model:task+task[@k+k],model:task (overrides --models/--tasks; @ sets that model's ks)",
    )
    p.add_argument("--seeds", default=None)
    p.add_argument("--ks", default=None)
    for name in _INTS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="the learning rate without a grid")
    p.add_argument("--lr-grid", default=None, help="comma-separated learning rates chosen per strategy on validation")
    p.add_argument("--val-fraction", type=float, default=None, help="validation share of the training sample")
    p.add_argument("--skip-full", default="", help="models without the full fine-tuning baseline, e.g. mpnet")
    p.add_argument(
        "--cards-only",
        action="store_true",
        help="only add the missing layer cards to the curves of --json (its settings; trains nothing), "
        "then regenerate --doc",
    )
    p.add_argument(
        "--robustness-only",
        action="store_true",
        help="only recompute claim 3 (independent draws) for the curves of --json (of --models; trains nothing), "
        "then regenerate --doc",
    )
    p.add_argument(
        "--relabel",
        action="store_true",
        help="recompute the verdicts of --json from its stored records and rewrite it and --doc (trains nothing)",
    )
    p.add_argument(
        "--recompute-flops",
        action="store_true",
        help="recompute the FLOPs of --json's training records under the current cost model (from each record's "
        "model, layers and sequence length; trains nothing), then rewrite it and --doc",
    )
    p.add_argument("--fresh", action="store_true", help="do not keep the other models' records of --json")
    p.add_argument("--note", default=None, help="a sentence for this part of the report, e.g. the budget and why")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="train nothing: report the runs already in the cache (e.g. of an interrupted or running reproduction)",
    )
    p.add_argument(
        "--no-prefix-cache", action="store_true", help="run every frozen prefix at every step (for comparison)"
    )
    p.add_argument(
        "--full-vocab", action="store_true", help="full fine-tuning trains the whole embedding matrix (for comparison)"
    )
    p.add_argument("--device", default=DEFAULTS["device"])
    p.add_argument(
        "--dtype",
        default=DEFAULTS["dtype"],
        help="every curve and run of the reproduction, e.g. autocast-bfloat16 (opt-in: about twice as fast on a CPU "
        "with native bfloat16; the doc says so)",
    )
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--json", default="docs/reproduction.json")
    p.add_argument("--doc", default="docs/reproduction.md")
    p.add_argument("--img", default="docs/img")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(a) -> int:
    check_output(a.json, what="--json")
    check_output(a.doc, what="--doc", make_parents=True)
    check_output(a.img, folder=True, what="--img", make_parents=True)
    if a.cache_dir and not os.environ.get("VARISCOPE_CACHE"):
        os.environ["VARISCOPE_CACHE"] = a.cache_dir  # training resolves converted models under this root
    if a.cards_only:
        return cards_only(a)
    if a.relabel:
        return relabel(a)
    if a.recompute_flops:
        return recompute_flops(a)
    if a.robustness_only:
        return robustness_only(a)
    started = time.time()
    repro = _config(a)
    command = _command(sys.argv[2:])
    if not a.fresh:
        _existing(a.json)  # a file that cannot be merged is refused before any work

    def save(part: dict, *, plots: bool = False) -> dict:
        part["parts"][0]["command"] = command
        if a.note:
            part["parts"][0]["note"] = a.note
        with path_lock(a.json):  # another reproduce may have written --json since: merge with what is there now
            now = None if a.fresh else _existing(a.json)
            res = finish(part) if now is None else merge(now, part)
            write_atomic(a.json, dumps(stamp(res), indent=1))
            write_doc(res, a.doc, a.img, command, plots=plots)
        return res

    log = lambda s: print(s, flush=True)  # noqa: E731
    cache = make_cache(a)
    if not a.fresh and (prior := _existing(a.json)) is not None and (n := restore_runs(prior, cache)):
        log(f"restored {n} finished run(s) from {a.json} into the cache: they are not trained again")
    if not a.cached_only:
        log(f"estimate: {plan_estimate(repro, cache.root).text()}")
    res = save(run(repro, cache=cache, log=log, save=save, cached_only=a.cached_only), plots=True)
    for c in ("claim1", "claim2", "claim3", "claim4"):
        print(f"{c}: {res['verdicts'][c]}")
    print(f"total time: {(time.time() - started) / 60:.1f} min")
    return 0


def _command(argv: list[str]) -> str:
    """The command that regenerates this part: ``argv`` without --cached-only and --note (quoted for a shell)."""
    keep, skip = [], False
    for x in argv:
        if skip or x == "--cached-only" or x.startswith("--note="):
            skip = False
            continue
        if x == "--note":
            skip = True
            continue
        keep.append(x)
    return shlex.join(["python", "-m", "analysis", "reproduce", *keep])


def _config(a) -> ReproConfig:
    """The ReproConfig of the command line (flags over the preset)."""
    from analysis.models.registry import registry_status

    for name in _INTS:
        v, least = getattr(a, name), 0 if name == "bootstrap" else 1
        if v is not None and v < least:
            raise VariscopeError(f"--{name.replace('_', '-')} must be at least {least}, got {v}")
    if a.val_fraction is not None and not 0 < a.val_fraction < 1:
        raise VariscopeError(f"--val-fraction must be between 0 and 1, got {a.val_fraction}")
    for flag in ("models", "tasks", "seeds", "ks", "lr_grid", "plan"):
        v = getattr(a, flag, None)
        if v is not None and not [x for x in v.split(",") if x.strip()]:
            raise VariscopeError(f"--{flag.replace('_', '-')} needs at least one value, got '{v}'")
    models = tuple(a.models.split(",")) if a.models else None
    repro = QUICK if a.quick else GEMMA if models == ("gemma3-270m",) else ReproConfig()
    if models:
        repro = replace(repro, models=models)
    elif not a.quick and any(r["name"] == "mpnet" and r["installed"] for r in registry_status()):
        repro = replace(repro, models=("minilm", "mpnet"))
    if a.tasks:
        repro = replace(repro, tasks=tuple(a.tasks.split(",")))
    if a.seeds:
        repro = replace(repro, seeds=_int_list(a.seeds, "seeds"))
    if a.ks:
        repro = replace(repro, ks=_int_list(a.ks, "ks"))
        if min(repro.ks) < 1:
            raise VariscopeError(
                f"--ks: k is the number of top layers tuned and must be at least 1, got {min(repro.ks)}"
            )
    for name in _INTS:
        if getattr(a, name) is not None:
            repro = replace(repro, **{name: getattr(a, name)})
    if a.lr is not None:
        repro = replace(repro, lr=a.lr)
    if a.lr_grid is not None:
        try:
            repro = replace(repro, lr_grid=tuple(float(x) for x in a.lr_grid.split(",") if x))
        except ValueError:
            raise VariscopeError(f"--lr-grid must be comma-separated numbers, got '{a.lr_grid}'") from None
        if not all(math.isfinite(x) and x > 0 for x in repro.lr_grid):
            raise VariscopeError(f"--lr-grid must be positive finite learning rates, got '{a.lr_grid}'")
    if a.val_fraction is not None:
        repro = replace(repro, val_fraction=a.val_fraction)
    if a.plan:
        repro = replace(repro, plan=_plan(a.plan))
    elif not a.quick and not a.models and not a.tasks and "mpnet" in repro.models:
        repro = replace(repro, plan=(("minilm", repro.tasks), ("mpnet", ("rotten_tomatoes",))))
    return replace(
        repro,
        device=a.device,
        dtype=_dtype(a.dtype, a.device),
        skip_full=tuple(x for x in a.skip_full.split(",") if x),
        prefix_cache=not a.no_prefix_cache,
        full_vocab=a.full_vocab,
    )


def _dtype(dtype: str, device: str) -> str:
    """``--dtype`` checked and named as resolved ("auto" kept, so its cache keys stay); one line where a training
    run would not run in it: on a CPU, runs keep float32 weights (bfloat16 weights do not train well)."""
    from analysis.models.load import AUTOCAST, resolve_device, resolve_dtype

    if dtype == "auto":
        return dtype
    where = resolve_device(device)
    resolved = resolve_dtype(dtype, where)
    if where == "cpu" and resolved not in ("float32",) and not resolved.startswith(AUTOCAST):
        raise VariscopeError(
            f"--dtype {dtype}: on a CPU the training runs keep float32 weights; use autocast-bfloat16 "
            "(float32 weights, bfloat16 compute) or float32"
        )
    return resolved


def _plan(text: str) -> tuple:
    """(model, tasks, ks or None) entries of ``--plan``; every name and k checked here, before any work."""
    entries: list[tuple[str, tuple[str, ...], tuple[int, ...] | None]] = []
    try:
        for x in text.split(","):
            m, rest = x.split(":")
            ts, _, ks = rest.partition("@")
            entries.append((m.strip(), tuple(ts.split("+")), tuple(int(k) for k in ks.split("+")) if ks else None))
    except ValueError:
        raise VariscopeError("--plan must look like minilm:rotten_tomatoes+bbc_news@1+2,mpnet:bbc_news") from None
    for model, tasks, k_list in entries:
        if not model or not all(t.strip() for t in tasks):
            raise VariscopeError(f"--plan names an empty model or task in '{text}'")
        if k_list is not None and min(k_list) < 1:
            raise VariscopeError(
                f"--plan: k is the number of top layers tuned and must be at least 1, got {min(k_list)}"
            )
    return tuple(entries)


def _existing(path: str) -> dict | None:
    """The results of an earlier run at ``path`` (None: no such file)."""
    if not Path(path).is_file():
        return None
    return _read(path)


def _read(path: str) -> dict:
    try:
        res = revive(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as e:
        raise VariscopeError(
            f"this needs the results JSON of an earlier run: cannot read {path} ({' '.join(str(e).split())}); "
            "pass --fresh to start a new one"
        ) from None
    if not isinstance(res, dict) or not {"curves", "verdicts"} <= set(res) or not ({"settings", "parts"} & set(res)):
        raise VariscopeError(
            f"{path} is not the results JSON of python -m analysis reproduce; pass --fresh to replace it"
        )
    try:  # the records themselves, as merge and the verdicts read them (before hours of training, not after)
        finish(migrate(copy.deepcopy(res)))
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as e:
        raise VariscopeError(
            f"{path} is a results JSON of the wrong shape ({type(e).__name__}: {str(e)[:80]}); "
            "pass --fresh to start a new one"
        ) from None
    return res


def relabel(a) -> int:
    """``--relabel``: the verdicts of ``--json`` recomputed from its records under the current rules; doc rewritten."""
    with path_lock(a.json):  # no other reproduce writes --json between the read and the write
        res = _read(a.json)
        command = res.get("command") or _previous_command(a.doc)
        if command and "parts" not in res:
            res["command"] = command
        res = finish(migrate(res))
        res.pop("command", None)
        write_atomic(a.json, dumps(stamp(res), indent=1))
        write_doc(res, a.doc, a.img, None)
    for c in ("claim1", "claim2", "claim3", "claim4"):
        print(f"{c}: {res['verdicts'][c]}")
    return 0


def recompute_flops(a) -> int:
    """``--recompute-flops``: the FLOPs of ``--json``'s records under the current cost model; JSON and doc rewritten."""
    from analysis.reproduce.recost import change_lines
    from analysis.reproduce.recost import recompute_flops as recompute

    with path_lock(a.json):  # no other reproduce writes --json between the read and the write
        res = finish(migrate(_read(a.json)))
        changes = recompute(res, log=lambda s: print(s, flush=True), cache_root=make_cache(a).root)
        res = finish(res)
        write_atomic(a.json, dumps(stamp(res), indent=1))
        write_doc(res, a.doc, a.img, None, plots=False)  # the plots show no FLOPs
    for line in change_lines(changes):
        print(line)
    print(f"claim4: {res['verdicts']['claim4']}")
    return 0


def robustness_only(a) -> int:
    """``--robustness-only``: claim 3's independent draws for ``--json``'s curves (saved after each task)."""
    res = finish(migrate(_read(a.json)))

    def save(r: dict, done: list[tuple[str, str]], *, plots: bool = False) -> dict:
        # another reproduce may have written --json since this one read it: keep its records, put in ours
        with path_lock(a.json):
            merged, stale = with_records_of(finish(migrate(_read(a.json))), r, "robustness", done)
            write_atomic(a.json, dumps(stamp(merged), indent=1))
            write_doc(merged, a.doc, a.img, None, plots=plots)
        _say_stale(stale, "claim-3 records")
        return merged

    models = tuple(a.models.split(",")) if a.models else None
    redone: list[tuple[str, str]] = []

    def save_each(r: dict, done: list[tuple[str, str]]) -> None:
        redone[:] = done
        save(r, done)

    res = add_robustness(res, cache=make_cache(a), log=lambda s: print(s, flush=True), save=save_each, models=models)
    res = save(res, redone, plots=True)
    print(f"claim3: {res['verdicts']['claim3']}")
    return 0


def _say_stale(stale: list, what: str) -> None:
    for model, task in stale:
        print(f"[{model}/{task}] its ν curve was replaced in --json meanwhile: its {what} there are kept", flush=True)


def cards_only(a) -> int:
    """``--cards-only``: add the missing cards to ``--json`` (saved after each), then rewrite ``--doc`` (no plots)."""

    def read() -> dict:
        res = _read(a.json)
        res.setdefault("command", _previous_command(a.doc) or "python -m analysis reproduce " + " ".join(sys.argv[2:]))
        return finish(migrate(res))

    res = read()
    before = {(c["model"], c["task"]): c for c in res.get("cards", [])}

    def save(r: dict, *, doc: bool = False) -> dict:
        # another reproduce may have written --json since this one read it: keep its records, put in the cards
        # this one computed (not those it read, which the other may have replaced since)
        new = [(c["model"], c["task"]) for c in r.get("cards", []) if before.get((c["model"], c["task"])) != c]
        with path_lock(a.json):
            merged, stale = with_records_of(read(), r, "cards", new)
            write_atomic(a.json, dumps(stamp(merged), indent=1))
            if doc:
                write_doc(merged, a.doc, a.img, None, plots=False)
        _say_stale(stale, "cards")
        return merged

    device = None if a.device == "auto" else a.device
    add_cards(res, cache=make_cache(a), log=lambda s: print(s, flush=True), save=save, device=device)
    res = save(res, doc=True)
    print(f"cards: {res['verdicts']['cards']}")
    return 0


def _previous_command(doc: str) -> str | None:
    """The command on the first "Regenerate:" line of an existing report (None: no such report)."""
    try:
        m = re.search(r"^Regenerate: `([^`]+)`$", Path(doc).read_text(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise VariscopeError(f"--{flag} must be a comma-separated list of whole numbers, got '{text}'") from None
