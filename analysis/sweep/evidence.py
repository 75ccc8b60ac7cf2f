"""The shipped evidence (docs/selectors.json): finished sweep records merged, summarised per model family.

The book is ``{"sweeps": [record, ...]}``, each record the ``--json`` of ``python -m analysis sweep``
(:func:`analysis.sweep.run.summarise` with ``train_args``). Everything the document and the pages say
about which selector is best is computed here from the records, never typed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.errors import VariscopeError

#: the keys of a finished sweep record (a file without them is a sweep still running, or not a sweep)
RECORD_KEYS: tuple[str, ...] = ("model", "task", "layers", "metric", "per_seed", "mean", "oracle_layer")
RECORD_KEYS += ("tied_layers", "selectors", "lr", "settings", "train_args", "seeds")
TASKS = ("rotten_tomatoes", "reuters_r8", "bbc_news")
#: the grid docs/selectors.md is planned to hold: (model, task), each with PLANNED_SEEDS seeds
PLANNED: tuple[tuple[str, str], ...] = tuple((m, t) for m in ("gemma3-270m", "smollm2-135m", "minilm") for t in TASKS)
PLANNED += (("mpnet", "rotten_tomatoes"),)
PLANNED_SEEDS = 3
PLANNED_N = 1200  # training texts of every planned record (the sweep's other settings are its defaults)
FAMILIES = ("encoder", "decoder", "other")
#: the shipped evidence the pages read (tests point it elsewhere)
BOOK_PATH = Path(__file__).resolve().parents[2] / "docs" / "selectors.json"
#: the page's recommendation rule → the selector that is that rule
RULE_SELECTOR = {"argmin": "nu_argmin", "plateau": "nu_plateau"}
#: a reduced-precision sweep may stand for a model's cells once, on this task, it ranks the layers as float32 does:
#: the Spearman of the two per-layer mean curves at least PRECISION_RHO and each oracle in the other's tied set
PRECISION_TASK = "rotten_tomatoes"
PRECISION_RHO = 0.8


def model_family(model: str) -> str:
    """ "encoder" or "decoder" for a registry model (its ``family``), "other" for any other name or path."""
    from analysis.models.registry import REGISTRY

    entry = REGISTRY.get(model)
    return entry.family if entry is not None else "other"


def check_record(d: object, where: str) -> dict:
    """``d`` if it is a finished sweep record; else a one-line error naming ``where``."""
    if not isinstance(d, dict):
        raise VariscopeError(f"{where} is not a sweep record (python -m analysis sweep --json)")
    missing = [k for k in RECORD_KEYS if k not in d]
    if missing:
        raise VariscopeError(f"{where} is not a finished sweep record: no {', '.join(missing)}")
    if not d["layers"] or len(d["mean"]) != len(d["layers"]) or len(d["per_seed"]) != len(d["layers"]):
        raise VariscopeError(f"{where}: layers, mean and per_seed must be aligned and non-empty")
    return d


def read_json(path: str | Path, what: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise VariscopeError(f"cannot read {what} {path}: {e}") from None


def read_book(path: str | Path) -> dict:
    """The book at ``path`` (an empty one when there is no such file), every record checked."""
    if not Path(path).exists():
        return {"sweeps": []}
    book = read_json(path, "the selectors JSON")
    if not isinstance(book, dict) or not isinstance(book.get("sweeps"), list):
        raise VariscopeError(f"{path} is not a selectors JSON (a dict with a 'sweeps' list)")
    for i, r in enumerate(book["sweeps"]):
        check_record(r, f"{path} sweep {i}")
    return book


def shipped_book() -> dict | None:
    """The book at :data:`BOOK_PATH`, None when there is none (a damaged one is a one-line error)."""
    return read_book(BOOK_PATH) if BOOK_PATH.exists() else None


def same_cell(a: dict, b: dict) -> bool:
    """Whether two records measure the same thing: model, task and settings."""
    return (a["model"], a["task"], a["settings"]) == (b["model"], b["task"], b["settings"])


def merge(book: dict, record: dict) -> dict:
    """A new book with ``record`` added, replacing a record of the same model, task and settings; sorted."""
    kept = [r for r in book["sweeps"] if not same_cell(r, record)]
    order = {cell: i for i, cell in enumerate(PLANNED)}
    place = lambda r: (order.get((r["model"], r["task"]), len(order)), r["model"], r["task"])  # noqa: E731
    return {**book, "sweeps": sorted([*kept, record], key=place)}


def record_dtype(record: dict) -> str:
    """The precision a record trained in (its settings say so only when it is not float32)."""
    return str(record["settings"].get("dtype", "float32"))


def counted(book: dict) -> list[dict]:
    """The records the evidence counts: one per (model, task), in the book's order: the float32 one where
    there is one, and among those the one of most seeds (the first of them on a tie).

    A record in another precision (a bfloat16 sweep) stands for its cell only where no float32 record
    does; beside a float32 record it is a precision check (:func:`precision_checks`), counted once.
    """
    best: dict[tuple[str, str], dict] = {}
    for r in book["sweeps"]:
        cell = (r["model"], r["task"])
        rank = lambda x: (record_dtype(x) == "float32", len(x["seeds"]))  # noqa: E731
        if cell not in best or rank(r) > rank(best[cell]):
            best[cell] = r
    return [r for r in book["sweeps"] if best[(r["model"], r["task"])] is r]


def precision_checks(book: dict) -> list[dict]:
    """A record in a reduced precision beside the float32 record of the same cell and otherwise same settings.

    One row each: {model, task, dtype, spearman (of the two per-layer mean curves), oracle, oracle_float32,
    in_tied (its oracle in float32's tied set), in_tied_float32 (float32's oracle in its tied set), nu_layer,
    nu_layer_float32, matches}. ``matches``: the per-layer ranking agrees (Spearman ≥ :data:`PRECISION_RHO`)
    and each oracle lies in the other's tied set.
    """
    from analysis.sweep.stats import spearman

    out = []
    for r in book["sweeps"]:
        dtype = record_dtype(r)
        if dtype == "float32":
            continue
        same = {k: v for k, v in r["settings"].items() if k != "dtype"}
        ref = next(
            (x for x in book["sweeps"] if (x["model"], x["task"], x["settings"]) == (r["model"], r["task"], same)), None
        )
        if ref is None or ref["layers"] != r["layers"]:
            continue
        rho = spearman(r["mean"], ref["mean"])
        row = {
            "model": r["model"],
            "task": r["task"],
            "dtype": dtype,
            "spearman": rho,
            "oracle": r["oracle_layer"],
            "oracle_float32": ref["oracle_layer"],
            "in_tied": r["oracle_layer"] in ref["tied_layers"],
            "in_tied_float32": ref["oracle_layer"] in r["tied_layers"],
            "nu_layer": (r["selectors"].get("nu_argmin") or {}).get("layer"),
            "nu_layer_float32": (ref["selectors"].get("nu_argmin") or {}).get("layer"),
        }
        row["matches"] = bool(rho is not None and rho >= PRECISION_RHO and row["in_tied"] and row["in_tied_float32"])
        out.append(row)
    return out


def precision_vetted(book: dict, model: str, dtype: str) -> bool:
    """Whether ``model``'s ``dtype`` sweep on :data:`PRECISION_TASK` ranks the layers as its float32 sweep does."""
    return any(
        c["matches"]
        for c in precision_checks(book)
        if (c["model"], c["task"], c["dtype"]) == (model, PRECISION_TASK, dtype)
    )


def lr_edges(record: dict) -> dict:
    """How often the validation grid's chosen rate sat at an edge: {low, high, layers, grid}. A rate at the edge
    may be short of the layer's best, which the fixed grid (the shipped shape) cannot tell; the doc says so."""
    grid = sorted(record["settings"].get("lr_grid") or [])
    lrs = record["lr"]
    low = sum(1 for x in lrs if len(grid) > 1 and np.isclose(x, grid[0]))
    high = sum(1 for x in lrs if len(grid) > 1 and np.isclose(x, grid[-1]))
    return {"low": low, "high": high, "layers": len(lrs), "grid": grid}


def missing_cells(book: dict) -> list[tuple[str, str]]:
    """The planned (model, task) cells without a record of at least :data:`PLANNED_SEEDS` seeds."""
    done = {(r["model"], r["task"]) for r in counted(book) if len(r["seeds"]) >= PLANNED_SEEDS}
    return [cell for cell in PLANNED if cell not in done]


def selectors_of(record: dict, representation: str | None = None) -> dict:
    """A record's selector table on ``representation`` where it scored that one, else its default (``selectors``:
    an encoder's only one, or a record made before the sweep scored both)."""
    by_rep = record.get("selectors_by_representation") or {}
    return by_rep.get(representation) or record["selectors"]


def summary(book: dict, representation: str | None = None) -> dict[str, list[dict]]:
    """family → one row per selector: pairs, mean and worst regret, how often its pick is in the tied set.

    Rows are sorted by mean regret (then worst regret, then name); a selector without a regret in a
    record (e.g. a score not computed) does not count for that record. ``representation`` (e.g. "raw"):
    the decoder records' selectors on those states (:func:`selectors_of`); None: each record's default.
    """
    out: dict[str, list[dict]] = {}
    for fam in FAMILIES:
        records = [r for r in counted(book) if model_family(r["model"]) == fam]
        tables = [selectors_of(r, representation) for r in records]
        names = list(dict.fromkeys(name for t in tables for name in t))
        rows = []
        for name in names:
            got = [t[name] for t in tables if (t.get(name) or {}).get("regret") is not None]
            if not got:
                continue
            regrets = [float(s["regret"]) for s in got]
            rows.append(
                {
                    "selector": name,
                    "pairs": len(got),
                    "mean_regret": float(np.mean(regrets)),
                    "worst_regret": float(max(regrets)),
                    "in_tied": sum(bool(s["in_tied"]) for s in got),
                }
            )
        if rows:
            out[fam] = sorted(rows, key=lambda x: (x["mean_regret"], x["worst_regret"], x["selector"]))
    return out


def random_layer(records: list[dict]) -> dict | None:
    """The baseline every selector must beat: a layer drawn uniformly at random from each record's layers.

    {pairs, mean_regret (its expected regret, averaged over the records), worst_regret (the largest expected
    regret of one record), in_tied (the expected number of records where it lands in the tied set)}; None
    without records.
    """
    if not records:
        return None
    regrets = [float(np.max(r["mean"]) - np.mean(r["mean"])) for r in records]
    return {
        "pairs": len(records),
        "mean_regret": float(np.mean(regrets)),
        "worst_regret": float(max(regrets)),
        "in_tied": float(sum(len(set(r["tied_layers"]) & set(r["layers"])) / len(r["layers"]) for r in records)),
    }


def noise_floor(records: list[dict]) -> float | None:
    """The median over ``records`` of the tied set's least half-width (:func:`analysis.sweep.stats.interval_floor`
    at the oracle's mean): how far apart two layers' means may lie in one record for the held-out texts alone."""
    from analysis.sweep.stats import interval_floor

    floors = [
        interval_floor(float(np.max(r["mean"])), int(r.get("n_eval") or r["settings"]["eval_n"]), len(r["seeds"]))
        for r in records
        if len(r["seeds"]) > 1
    ]
    return float(np.median(floors)) if floors else None


def family_records(book: dict, family: str) -> list[dict]:
    """The counted records (:func:`counted`) of one model family."""
    return [r for r in counted(book) if model_family(r["model"]) == family]


def favoured(rows: list[dict]) -> list[dict]:
    """The rows sharing the lowest mean regret (ties: every one of them)."""
    best = rows[0]["mean_regret"]
    return [x for x in rows if np.isclose(x["mean_regret"], best, rtol=0, atol=1e-12)]


def verdict(family: str, rows: list[dict], records: list[dict] | None = None) -> str:
    """Plain sentences for ``family``: the lowest mean regret, what a random layer would score, whether the
    evidence can tell the leading selectors apart, which do no better than chance, and where ν's pick lies.

    ``records``: the family's counted records (:func:`family_records`), for the random-layer baseline and the
    noise floor; without them only the first and last sentences are said.
    """
    best = favoured(rows)
    names = " and ".join(f"`{x['selector']}`" for x in best)
    n = max(x["pairs"] for x in rows)
    pairs = f"{n} (model, task) pair{'s' if n != 1 else ''}"
    text = (
        f"On the {family} sweeps measured ({pairs}), the lowest mean regret is {names}'s "
        f"({best[0]['mean_regret']:.4f}, worst {best[0]['worst_regret']:.4f})"
    )
    chance = random_layer(records or [])
    if chance is not None:
        floor = noise_floor(records or [])
        always = [x["selector"] for x in rows if x["pairs"] == n and x["in_tied"] == n]
        text += (
            f"; a layer drawn at random would have an expected regret of {chance['mean_regret']:.4f} and land in the "
            f"tied set in {chance['in_tied']:.1f} of {n}."
        )
        regrets = [x["mean_regret"] for x in rows if x["selector"] in always]
        spread = max(regrets) - min(regrets) if regrets else 0.0
        if len(always) > 1 and floor is not None and spread < floor:
            text += (
                f" The {len(always)} selectors whose pick lies in the tied set in every pair ("
                + ", ".join(f"`{a}`" for a in always)
                + f") are not told apart by this evidence: their mean regrets differ by {spread:.4f}, "
                f"less than one pair's sampling noise (about ±{floor:.3f})"
                + (
                    "; it favours them as a group over a random layer, not one of them over the rest."
                    if max(regrets) < chance["mean_regret"]
                    else "."
                )
            )
        worse = [x["selector"] for x in rows if x["mean_regret"] >= chance["mean_regret"]]
        if worse:
            text += " No better than a random layer: " + ", ".join(f"`{w}`" for w in worse) + "."
    else:
        text += "."
    nu = next((x for x in rows if x["selector"] == "nu_argmin"), None)
    if nu is None:
        return text + " ν's argmin has no regret in these records."
    return text + (
        f" ν's pick (`nu_argmin`, mean regret {nu['mean_regret']:.4f}) lies within the tied set in "
        f"{nu['in_tied']} of {nu['pairs']} pair{'s' if nu['pairs'] != 1 else ''}."
    )


def better_than_rule(book: dict, model: str, rule: str, representation: str | None = None) -> dict | None:
    """For the Variability page: the favoured selector of ``model``'s family when it beats the page's ν rule,
    on the states the page shows (``representation``; None: each record's default).

    Returns {selector, family, pairs, mean_regret, rule_selector, rule_regret, noise (one pair's sampling noise,
    :func:`noise_floor`)} or None (no evidence for
    that family, the rule's own selector not measured, or nothing with a lower mean regret).
    """
    fam = model_family(model)
    rows = summary(book, representation).get(fam)
    own = RULE_SELECTOR.get(rule)
    mine = next((x for x in rows or [] if x["selector"] == own), None)
    if fam == "other" or not rows or mine is None or rows[0]["mean_regret"] >= mine["mean_regret"]:
        return None
    top = rows[0]
    return {
        "selector": top["selector"],
        "family": fam,
        "pairs": top["pairs"],
        "mean_regret": top["mean_regret"],
        "rule_selector": own,
        "rule_regret": mine["mean_regret"],
        "noise": noise_floor(family_records(book, fam)),
    }


def evidence_line(model: str, rule: str, book: dict | None = None, representation: str | None = None) -> str | None:
    """One line for beside ν's ℓ*: another selector did better for ``model``'s family (None: silent), scored on
    ``representation`` (the states the page shows; None: each record's default).

    ``book`` defaults to the shipped one (:func:`shipped_book`); silent without evidence for the family.
    """
    book = shipped_book() if book is None else book
    ev = None if book is None else better_than_rule(book, model, rule, representation)
    if ev is None:
        return None
    on = f", {representation} states" if representation and ev["family"] == "decoder" else ""
    return (
        f"Trained evidence ({ev['pairs']} {ev['family']} sweep{'s' if ev['pairs'] != 1 else ''}{on}, "
        "docs/selectors.md): "
        f"`{ev['selector']}` has a lower mean regret than ν's {rule} rule ({ev['mean_regret']:.4f} vs "
        f"{ev['rule_regret']:.4f} of the held-out metric)"
        + (
            f", a difference within one sweep's sampling noise (about ±{ev['noise']:.3f})."
            if ev["noise"] is not None and ev["rule_regret"] - ev["mean_regret"] < ev["noise"]
            else "."
        )
    )


def _mean(xs: list) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    return float(np.mean(vals)) if vals else None


def representation_rows(record: dict) -> list[dict]:
    """One row per representation a record scored: {representation, nu_regret, nu_spearman, mean_regret,
    mean_spearman, selectors}; the means are over its selectors with a value (Spearman: those with a score).

    A record made before the sweep scored both representations has no ``selectors_by_representation``:
    its one row is ``selectors``, under ``representation_default`` (or "raw", the curve's only one then).
    """
    by_rep = record.get("selectors_by_representation") or {
        record.get("representation_default", "raw"): record["selectors"]
    }
    rows = []
    for rep, sel in by_rep.items():
        nu = sel.get("nu_argmin") or {}
        rows.append(
            {
                "representation": rep,
                "nu_regret": nu.get("regret"),
                "nu_spearman": nu.get("spearman"),
                "mean_regret": _mean([s.get("regret") for s in sel.values()]),
                "mean_spearman": _mean([s.get("spearman") for s in sel.values()]),
                "selectors": len(sel),
            }
        )
    return rows


def representation_table(book: dict) -> list[dict]:
    """The records scored on more than one representation (pre-norm decoders): {model, task, rows} each."""
    out = []
    for r in counted(book):
        rows = representation_rows(r)
        if len(rows) > 1:
            out.append({"model": r["model"], "task": r["task"], "rows": rows})
    return out


def unscored_decoders(book: dict) -> list[tuple[str, str]]:
    """Decoder records with one representation only (made before the sweep scored both)."""
    return [
        (r["model"], r["task"])
        for r in counted(book)
        if model_family(r["model"]) == "decoder" and len(representation_rows(r)) < 2
    ]


def representation_verdict(table: list[dict]) -> str:
    """Which representation agrees better with the trained truth over the decoder pairs of ``table``: lower mean
    regret and higher mean Spearman over selectors, averaged over the pairs (both must agree, or it says so)."""
    if not table:
        return "No decoder measured yet on both representations."
    reps = list(dict.fromkeys(x["representation"] for t in table for x in t["rows"]))
    regret = {p: _mean([x["mean_regret"] for t in table for x in t["rows"] if x["representation"] == p]) for p in reps}
    rho = {p: _mean([x["mean_spearman"] for t in table for x in t["rows"] if x["representation"] == p]) for p in reps}
    n = len(table)
    head = f"Over the {n} decoder (model, task) pair{'s' if n != 1 else ''} measured on both representations"
    numbers = "; ".join(f"{p}: mean regret {_f(regret[p])}, mean Spearman {_f(rho[p], 2)}" for p in reps)
    low, high = _best(regret, min), _best(rho, max)
    if low is not None and low == high:
        return f"{head}, `{low}` agrees better with the trained truth ({numbers})."
    if low is None and high is None:
        return f"{head}, neither agrees better: the measures tie or are missing ({numbers})."
    if low is None or high is None:
        by = "mean regret" if high is None else "mean Spearman"
        return f"{head}, `{low or high}` agrees better by {by}; the other measure ties or is missing ({numbers})."
    return (
        f"{head}, neither agrees better on both counts: `{low}` has the lower mean regret, `{high}` the higher "
        f"mean Spearman ({numbers})."
    )


def _f(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _best(values: dict[str, float | None], how) -> str | None:
    """The one key of the best value (None: no values, or a tie between representations)."""
    known = {k: v for k, v in values.items() if v is not None}
    if not known:
        return None
    top = how(known.values())
    winners = [k for k, v in known.items() if np.isclose(v, top, rtol=0, atol=1e-12)]
    return winners[0] if len(winners) == 1 else None
