"""The claims' tables of docs/reproduction.md (claims 1, 2 and 4 per setting and per task; claim 3's draws).

Every cell is a field of the stored "verdicts" or "robustness" records, only rounded here.
"""

from __future__ import annotations

from pathlib import Path

from analysis.reproduce.verdicts import NOT_COUNTED


def image(rel: str | Path | None, alt: str, name: str) -> list[str]:
    return [] if rel is None else [f"![{alt}]({rel}/{name})", ""]


def fmt(x: float | None, digits: int = 4, sign: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def claim_lines(res: dict) -> list[str]:
    """The per-setting and per-task tables of claims 1, 2 and 4."""
    v = res["verdicts"]
    lines = [
        "### Claim 1: variability − top-k, paired over seeds",
        "",
        "| model | task | k | ℓ* | L | tuned | variability | top | mean difference | se | 95 % interval | seeds "
        "| outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in v["claim1_detail"]:
        lines.append(
            f"| {x['model']} | {x['task']} | {x['k']} | {x.get('best_layer', '–')} | {x.get('n_layers') or '–'} | "
            f"{x.get('tuned', '–')} | {x['variability']:.4f} | {fmt(x.get('top'))} | {fmt(x.get('mean'), 4, True)} | "
            f"{_se(x)} | {_interval(x)} | {x.get('n', '–')} | {_outcome(x['outcome'])} |"
        )
    lines += ["", "† the se is the binomial floor (the seeds' own sd was smaller)."]
    lines += _task_lines(v.get("claim1_tasks"), "better", "worse")
    lines += [
        "",
        "### Claim 2: variability − full fine-tuning, paired over seeds",
        "",
        "| model | task | k | variability | full | mean difference | se | 95 % interval | seeds | difference "
        "| outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in v["claim2_detail"]:
        out = _outcome(x["outcome"])
        if x.get("top_vs_full"):
            out += f"; top-k against full: {x['top_vs_full']}"
        lines.append(
            f"| {x['model']} | {x['task']} | {x['k']} | {x['variability']:.4f} | {fmt(x.get('full'))} | "
            f"{fmt(x['gap'], 4, True)} | {_se(x)} | {_interval(x)} | {x.get('n') or '–'} | "
            f"{x.get('difference', x.get('outcome', '–'))} | {out} |"
        )
    lines += _task_lines(v.get("claim2_tasks"), "matching", "worse beyond the margin")
    return lines + claim4_lines(v)


def _outcome(word: str) -> str:
    return NOT_COUNTED.get(word, word)


def _se(x: dict) -> str:
    """The standard error, marked † where the binomial floor set it."""
    return fmt(x.get("se")) + (" †" if x.get("floored") else "")


def _task_lines(tasks: list[dict] | None, support: str, against: str) -> list[str]:
    """The per-task table of a claim (its testable k, how many support / contradict, and the task's word)."""
    if not tasks:
        return []
    lines = [
        "",
        f"Per task: the k counted, how many of them are {support}, how many {against}, and the task's word.",
        "",
        f"| model | task | k counted | {support} | {against} | task |",
        "|---|---|---|---|---|---|",
    ]
    for t in tasks:
        ks = ", ".join(map(str, t["ks"])) or "none"
        lines.append(f"| {t['model']} | {t['task']} | {ks} | {t['support']} | {t['against']} | {_outcome(t['word'])} |")
    return lines


def lr_text(r: dict) -> str:
    return "–" if r.get("lr") is None else f"{r['lr']:g}"


def _interval(x: dict) -> str:
    return "–" if x.get("low") is None else f"[{x['low']:+.4f}, {x['high']:+.4f}]"


def claim4_lines(v: dict) -> list[str]:
    """Claim 4: the saving split into partial tuning and truncation, training and inference."""
    lines = [
        "",
        "### Claim 4: where the saving comes from",
        "",
        "Training FLOPs per example (cost model) and measured training time (mean over seeds of each run's "
        "timed training loop, excluding evaluation), as factors: **total** = variability ÷ full "
        "fine-tuning = **partial tuning** (top-k ÷ full: same layers kept, only k tuned) × **truncation** "
        "(variability ÷ top-k: same k tuned, the layers above ℓ* removed). Inference: the share of the blocks "
        "kept, ℓ*/L (the blocks are the same size; the classifier head is negligible), and the cost model's "
        "forward FLOPs per example where recorded. Where ℓ* is the top layer truncation is 1 by construction.",
        "",
        "| model | task | k | FLOPs total | partial | truncation | time total | partial | truncation | inference "
        "ℓ*/L | inference GFLOPs / example | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in v["claim4_detail"]:
        full = x.get("has_full", True)
        lines.append(
            f"| {x['model']} | {x['task']} | {x['k']} | {fmt(x['flops_vs_full'] if full else None, 3)} "
            f"| {fmt(x.get('partial_flops') if full else None, 3)} | {fmt(x.get('truncation_flops'), 3)} "
            f"| {fmt(x.get('time_vs_full'), 3)} | {fmt(x.get('partial_time'), 3)} | {fmt(x.get('truncation_time'), 3)} "
            f"| {fmt(x.get('inference_vs_full'), 3)} | {fmt(x.get('inference_gflops'), 2)} "
            f"| {_outcome(x.get('outcome', '–'))} |"
        )
    return lines + _task_lines(v.get("claim4_tasks"), "cheaper", "not cheaper")


def robustness_lines(res: dict, rel: str | Path | None = None) -> list[str]:
    """Claim 3's tables (per subset, per task) and plot."""
    draws = [x for x in res["robustness"] if "draws" in x]
    nested = [x for x in res["robustness"] if "draws" not in x]
    lines = [
        "",
        "## Claim 3: robustness of ν",
        "",
        "Each subset is drawn several times (seeds 1, 2, …), independently of the reference curve (the "
        "ν-per-layer table's): *disjoint* draws come from training texts outside the reference (no text shared); "
        "where the reference is the whole training split (no texts are left outside it), the draws are *bootstrap* "
        "resamples of the reference (with replacement, within each class), which share its texts. Fraction 1 is a "
        "same-size draw: the sampling noise the other rows should be read against; it is not counted. Where the "
        "reference's ℓ* has far lower ν than every other layer (minilm's top layer, see the ν table), ℓ* staying put "
        "is nearly automatic: there the Spearman carries the claim.",
        "",
    ]
    if draws:
        lines += [
            "| model | task | subset | n | draws | source | Spearman mean ± sd | min–max | ℓ* of the draws "
            "| ℓ* moved |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
    for x in draws:
        sub = f"fraction {x['value']:g}" if x["kind"] == "fraction" else f"imbalance {x['value']}"
        lines.append(
            f"| {x['model']} | {x['task']} | {sub} | {x['draws'][0]['n']} | {len(x['draws'])} | {x['source']} | "
            f"{x['spearman_mean']:.3f} ± {x['spearman_sd']:.3f} | {x['spearman_min']:.3f}–{x['spearman_max']:.3f} | "
            f"{', '.join(map(str, x['best_layers']))} | {x['moved']} |"
        )
    tasks = (res["verdicts"].get("claim3_tasks") or []) if draws else []
    if tasks:
        lines += [
            "",
            "Per task (the counted draws: fractions below 1 and the imbalances other than 1:1; beside them, how "
            "often ℓ* moved in the draws of the reference's own size and balance, which are not counted):",
            "",
            "| model | task | draws | Spearman mean | min | ℓ* moved | ℓ* moved at the reference's size | task |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in tasks:
            if t["testable"]:
                base = f"{t['baseline_moved']} of {t['baseline_draws']}" if t.get("baseline_draws") else "–"
                lines.append(
                    f"| {t['model']} | {t['task']} | {t['draws']} | {t['spearman_mean']:.3f} | "
                    f"{t['spearman_min']:.3f} | {t['moved']} | {base} | {t['word']} |"
                )
    if nested:
        lines += [
            "",
            "Single draws of an older run, nested in the reference (each a prefix of its per-class permutation, "
            "so their Spearman is inflated); shown, not counted:",
            "",
            "| model | task | subset | n | Spearman | ℓ* | moved |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in nested:
            sub = f"fraction {x['value']:g}" if x["kind"] == "fraction" else f"imbalance {x['value']}"
            lines.append(
                f"| {x['model']} | {x['task']} | {sub} | {x['n']} | {x['spearman']:.3f} | {x['best_layer']} | "
                f"{'yes' if x['best_layer_moved'] else 'no'} |"
            )
    return lines + ["", *image(rel, "robustness", "repro_robustness.png")]
