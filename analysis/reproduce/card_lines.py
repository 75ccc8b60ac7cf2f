"""The report's layer cards section: does ν pick the layer a linear probe would pick?"""

from __future__ import annotations

from analysis.reproduce.tables import fmt
from analysis.reproduce.verdicts import rank_p


def _rank_words(rho: float | None, p: float | None) -> str:
    if rho is None or p is None:
        return "rankings not comparable"
    if p >= 0.05:
        return f"no significant rank agreement (p = {p:.2f})"
    return f"rankings {'agree' if rho > 0 else 'disagree'} (p = {p:.3f})"


def _card_verdict(c: dict) -> str:
    """The verdict of one "cards" record in words."""
    if c["same_layer"]:
        return f"yes: ℓ* is the probe's best layer; {_rank_words(c['rank_agreement'], _p(c))}"
    acc = c["probe_accuracy"]
    gap = c.get("probe_gain", acc[c["probe_best_layer"]] - acc[c["recommended_layer"]])
    near = " (within 0.01)" if gap <= 0.01 else ""
    rank = _rank_words(c["rank_agreement"], _p(c))
    return f"no: the probe gains {gap:.3f} at layer {c['probe_best_layer']}{near}; {rank}"


def _p(c: dict) -> float | None:
    return c["rank_p"] if "rank_p" in c else rank_p(c)


def cards_lines(res: dict) -> list[str]:
    """The section "Does ν pick the layer a probe would pick?" from the "cards" records (none: no section)."""
    cards = res.get("cards")
    if not cards:
        return []
    done = [c for c in cards if "not_computed" not in c]
    p = done[0]["probe"] if done else {"folds": 5, "k": 10}
    lines = [
        "",
        "## Does ν pick the layer a probe would pick?",
        "",
        "The layer cards of each curve's texts (the same pooled states): on every layer, a linear probe "
        f"(logistic regression on standardised states, mean held-out accuracy over {p['folds']} stratified folds) "
        f"and a leave-one-out {p['k']}-nearest-neighbour vote (cosine). ℓ* = argmin of ν over layers 1..L; the "
        "probe's best layer = argmax of its accuracy over layers 0..L. Spearman: rank correlation across layers "
        "0..L between −ν and the probe accuracy, with its two-sided p (rankings agree only where p < 0.05).",
        "",
        "| model | task | n | ℓ* | probe's best layer | probe accuracy at ℓ* | at the probe's best | Spearman | p "
        "| does ν pick the probe's layer? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cards:
        if "not_computed" in c:
            dash = " – |" * 7
            lines.append(f"| {c['model']} | {c['task']} |{dash} not computed ({c['not_computed']}) |")
            continue
        acc, rho = c["probe_accuracy"], c["rank_agreement"]
        lines.append(
            f"| {c['model']} | {c['task']} | {c['n']} | {c['recommended_layer']} | {c['probe_best_layer']} | "
            f"{acc[c['recommended_layer']]:.3f} | {acc[c['probe_best_layer']]:.3f} | "
            f"{'–' if rho is None else f'{rho:.2f}'} | {fmt(_p(c), 3)} | {_card_verdict(c)} |"
        )
    if done:
        lines += [
            "",
            "| model | task | probe accuracy per layer (0 = embeddings) | kNN accuracy per layer |",
            "|---|---|---|---|",
        ]
        for c in done:
            lines.append(
                f"| {c['model']} | {c['task']} | {', '.join(f'{x:.3f}' for x in c['probe_accuracy'])} | "
                f"{', '.join(f'{x:.3f}' for x in c['knn_accuracy'])} |"
            )
        lines += ["", convergence_line(done)]
    return lines


def convergence_line(cards: list[dict]) -> str:
    """Whether the probe's fits converged (the cards' ``probe_converged``, [layer][fold]); records written before
    it was recorded are named as such."""
    have = [c for c in cards if c.get("probe_converged")]
    fits = [(c, sum(map(sum, c["probe_converged"])), sum(map(len, c["probe_converged"]))) for c in have]
    said = "; ".join(f"{c['model']} · {c['task']}: {ok} of {n} fits converged" for c, ok, n in fits)
    older = [f"{c['model']} · {c['task']}" for c in cards if not c.get("probe_converged")]
    return (
        "Probe convergence (every layer × fold): "
        + (said or "not recorded")
        + (f"; not recorded (cards written before convergence was): {', '.join(older)}" if older else "")
        + "."
    )
