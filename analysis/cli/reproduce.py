"""``python -m analysis reproduce``: test the paper's claims on offline data."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

from ..atomic import check_output, write_atomic
from ..errors import VariscopeError
from ..reproduce import QUICK, ReproConfig, add_cards, run
from ..reproduce_report import write_doc
from .common import make_cache


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="test the paper's claims on offline data")
    p.add_argument("--quick", action="store_true", help="one task, one seed, few steps (about 10 minutes)")
    p.add_argument("--models", default=None, help="comma-separated (default minilm, plus mpnet if installed)")
    p.add_argument("--tasks", default=None)
    p.add_argument(
        "--plan",
        default=None,
        help="model:task+task[@k+k],model:task (overrides --models/--tasks; @ sets that model's ks)",
    )
    p.add_argument("--seeds", default=None)
    p.add_argument("--ks", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--eval-n", type=int, default=None)
    p.add_argument("--analysis-n", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--bootstrap", type=int, default=None)
    p.add_argument("--skip-full", default="", help="models without the full fine-tuning baseline, e.g. mpnet")
    p.add_argument(
        "--cards-only",
        action="store_true",
        help="only add the missing layer cards to the curves of --json (its settings; trains nothing), "
        "then regenerate --doc",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--json", default="docs/reproduction.json")
    p.add_argument("--doc", default="docs/reproduction.md")
    p.add_argument("--img", default="docs/img")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(a) -> int:
    from ..registry import registry_status

    check_output(a.json, what="--json")
    check_output(a.doc, what="--doc", make_parents=True)
    check_output(a.img, folder=True, what="--img", make_parents=True)
    if a.cards_only:
        return cards_only(a)
    for name in ("steps", "n_train", "eval_n", "analysis_n", "max_length"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise VariscopeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.bootstrap is not None and a.bootstrap < 0:
        raise VariscopeError(f"--bootstrap must be 0 or more, got {a.bootstrap}")

    rc = QUICK if a.quick else ReproConfig()
    if a.models:
        rc = replace(rc, models=tuple(a.models.split(",")))
    elif not a.quick and any(r["name"] == "mpnet" and r["installed"] for r in registry_status()):
        rc = replace(rc, models=("minilm", "mpnet"))
    if a.tasks:
        rc = replace(rc, tasks=tuple(a.tasks.split(",")))
    if a.seeds:
        rc = replace(rc, seeds=_int_list(a.seeds, "seeds"))
    if a.ks:
        rc = replace(rc, ks=_int_list(a.ks, "ks"))
    for name in ("steps", "n_train", "eval_n", "analysis_n", "max_length", "bootstrap"):
        if getattr(a, name) is not None:
            rc = replace(rc, **{name: getattr(a, name)})
    if a.plan:
        try:
            entries = []
            for x in a.plan.split(","):
                m, rest = x.split(":")
                ts, _, ks = rest.partition("@")
                entries.append((m, tuple(ts.split("+")), tuple(int(k) for k in ks.split("+")) if ks else None))
            rc = replace(rc, plan=tuple(entries))
        except ValueError:
            raise VariscopeError(
                "--plan must look like minilm:rotten_tomatoes+bbc_news,mpnet:rotten_tomatoes"
            ) from None
    elif not a.quick and not a.models and not a.tasks and "mpnet" in rc.models:
        rc = replace(rc, plan=(("minilm", rc.tasks), ("mpnet", ("rotten_tomatoes",))))
    rc = replace(rc, device=a.device, skip_full=tuple(x for x in a.skip_full.split(",") if x))
    res = run(rc, cache=make_cache(a), log=lambda s: print(s, flush=True))
    res["command"] = "python -m analysis reproduce " + " ".join(sys.argv[2:])
    write_atomic(a.json, json.dumps(res, indent=1))
    write_doc(res, a.doc, a.img, res["command"])
    for c in ("claim1", "claim2", "claim3", "claim4"):
        print(f"{c}: {res['verdicts'][c]}")
    return 0


def cards_only(a) -> int:
    """``--cards-only``: add the missing cards to ``--json`` (saved after each), then rewrite ``--doc`` (no plots)."""
    try:
        res = json.loads(Path(a.json).read_text())
    except (OSError, ValueError) as e:
        raise VariscopeError(
            f"--cards-only needs the results JSON of an earlier run: cannot read {a.json} ({e})"
        ) from None
    if not isinstance(res, dict) or not {"settings", "curves", "verdicts"} <= set(res):
        raise VariscopeError(f"{a.json} is not the results JSON of python -m analysis reproduce")
    res.setdefault("command", _previous_command(a.doc) or "python -m analysis reproduce " + " ".join(sys.argv[2:]))

    def save(r: dict) -> None:
        write_atomic(a.json, json.dumps(r, indent=1))

    device = None if a.device == "auto" else a.device
    add_cards(res, cache=make_cache(a), log=lambda s: print(s, flush=True), save=save, device=device)
    save(res)
    write_doc(res, a.doc, a.img, res["command"], plots=False)
    print(f"cards: {res['verdicts']['cards']}")
    return 0


def _previous_command(doc: str) -> str | None:
    """The command on the "Regenerate:" line of an existing report (None: no such report)."""
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
