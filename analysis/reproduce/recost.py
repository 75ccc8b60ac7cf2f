"""The FLOPs of stored training records, recomputed under the current cost model without training anything.

A "runs" record keeps the FLOPs that the cost model of its day computed (``cost_model``; a record
without it was computed by model 1: attention at the hidden size, its backward equal to its forward).
:func:`recompute_flops` recomputes ``flops_per_example``, ``flops_vs_full`` and
``inference_flops_per_example`` of every record from its model's blocks
(:func:`analysis.training.cost.cost`), its selection (ℓ* and the tuned layers it stores) and its mean
token length ``seq_len``. A record without ``seq_len`` gets the one its run measured: the mean
tokenized length of the training sample of its seed, drawn and tokenized as the run drew it
(:func:`analysis.training.trainer.make_plan` on the TrainConfig that
:func:`analysis.reproduce.runs.training_runs` builds from the part's settings). Only configs,
tokenizers and the sampled texts are read; the model is loaded once per model for its block sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from analysis.errors import VariscopeError
from analysis.training.cost import COST_MODEL

FIELDS = ("flops_per_example", "flops_vs_full", "inference_flops_per_example")


def recompute_flops(res: dict, *, log: Callable[[str], None] = print, cache_root=None) -> list[dict]:
    """Rewrite the FLOPs of every record of ``res["runs"]`` in place under :data:`COST_MODEL`.

    Returns one change per record: its model, task, strategy, k, seed and, per field of :data:`FIELDS`,
    (old value or None, new value). Each record also gets ``seq_len`` (where missing) and ``cost_model``.
    A record whose sample does not have the size it stores is refused (one line): its run drew other texts.
    ``cache_root``: where an offline model is found (else the default cache).
    """
    from analysis.reproduce.config import ReproConfig, config_from_settings
    from analysis.reproduce.run import settings_for

    changes = []
    for model in dict.fromkeys(r["model"] for r in res.get("runs", [])):
        rows = [r for r in res["runs"] if r["model"] == model]

        def config(task: str, model: str = model) -> ReproConfig:  # each task's settings: its part's
            return replace(config_from_settings(settings_for(res, model, task)), device="cpu", dtype="float32")  # sizes

        base, tok = _base(config(rows[0]["task"]), model, cache_root)
        measured: dict[tuple, tuple[float, int]] = {}
        log(f"{model}: {len(rows)} records")
        for r in rows:
            key = (r["task"], r["seed"])
            if key not in measured:
                measured[key] = _sample_facts(config(r["task"]), model, r, tok)
            seq_len, num_labels = measured[key]
            seq_len = seq_len if r.get("seq_len") is None else float(r["seq_len"])
            changes.append(_recost(r, base, seq_len, num_labels))
    return changes


def _base(repro, model: str, cache_root=None):
    """(model, tokenizer) of ``model`` loaded as a training run loads it (float32 on the CPU)."""
    from analysis.pipeline import cached_model, resolve_target
    from analysis.reproduce.runs import acfg
    from analysis.training.cost import load_dtype

    target = resolve_target(acfg(repro, model, repro.tasks[0], repro.n_train, repro.seeds[0]), cache_root)
    return cached_model(target.ref, target.device, load_dtype(target.device, target.dtype))


def _sample_facts(repro, model: str, rec: dict, tok) -> tuple[float, int]:
    """(mean token length of the training sample, its number of classes) of the run of ``rec``."""
    from analysis.reproduce.runs import acfg
    from analysis.training import TrainConfig
    from analysis.training.selection import Selection
    from analysis.training.trainer import make_plan

    sel = Selection(int(rec["classifier_layer"]), tuple(rec["tuned_layers"]))
    a = acfg(repro, model, rec["task"], repro.n_train, int(rec["seed"]))
    plan = make_plan(
        TrainConfig(a, sel, steps=repro.steps, batch_size=repro.batch_size, eval_n=repro.eval_n, seed=int(rec["seed"])),
        tok,
    )
    n = len(plan.train_data)
    if rec.get("n_train") is not None and int(rec["n_train"]) != n:
        raise VariscopeError(
            f"{model} · {rec['task']} · seed {rec['seed']}: the record trained on {rec['n_train']} texts but the "
            f"sample of its settings has {n}; its sequence length cannot be recomputed"
        )
    return plan.seq_len, len(plan.train_data.label_names)


def _recost(rec: dict, base, seq_len: float, num_labels: int) -> dict:
    """Recompute the FLOPs of ``rec`` in place; returns the change."""
    from analysis.training.cost import cost
    from analysis.training.selection import Selection

    sel = Selection(int(rec["classifier_layer"]), tuple(int(x) for x in rec["tuned_layers"]), rec["strategy"] == "full")
    c = cost(base, sel, seq_len, num_labels)
    new = {
        "flops_per_example": float(c["flops_per_example"]),
        "flops_vs_full": float(c["flops_vs_full"]),
        "inference_flops_per_example": float(sum(c["block_forward_flops"][: c["layers_kept"]])),
    }
    change = {k: rec.get(k) for k in ("model", "task", "strategy", "k", "seed")}
    change.update({f: (rec.get(f), new[f]) for f in FIELDS})
    rec.update(new)
    rec["seq_len"] = float(seq_len)
    rec["cost_model"] = COST_MODEL
    return change


def change_lines(changes: list[dict]) -> list[str]:
    """Per model: how ``flops_vs_full`` and ``flops_per_example`` moved (ranges over its records)."""
    out = []
    for model in dict.fromkeys(c["model"] for c in changes):
        mine = [c for c in changes if c["model"] == model]
        parts = []
        for f in FIELDS:
            pairs = [c[f] for c in mine if c[f][0] is not None]
            if f == "flops_vs_full":
                moved = [abs(new - old) for old, new in pairs]
                if moved:
                    parts.append(f"{f} moved by up to {max(moved):.3f} (absolute)")
            elif pairs:
                ratio = [new / old for old, new in pairs if old]
                parts.append(f"{f} ×{min(ratio):.3f}…×{max(ratio):.3f}")
            added = sum(1 for c in mine if c[f][0] is None)
            if added:
                parts.append(f"{f} added to {added}")
        out.append(f"{model} ({len(mine)} records): " + "; ".join(parts))
    return out
