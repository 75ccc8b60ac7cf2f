"""``bench --only encoder``: texts per second of the all-layer pooled curve on a BERT-base-sized encoder.

The model is a randomly initialised 12-layer, d = 768 BERT (speed does not depend on the
weights) saved to a temporary folder and loaded through the same loader as any user
folder, with the tokenizer of the run's model (MiniLM's BERT vocabulary by default). The
texts are Rotten Tomatoes snippets (about 30 tokens each with the special tokens), or the
run's own texts file. For each batch size and dtype the section times, alternating:

- ``curve``: texts → ν of every layer (:func:`analysis.bench.common.our_curve`: tokenising,
  the one forward pass with every layer pooled, the float32 states on the CPU, ν);
- ``floor``: the same batches through the bare forward pass (no hidden states kept);
- ``batching``: tokenising and padding alone (CPU work the forward pass waits for).

The goal is ≥ 20,000 texts/s for the curve on a GPU in bf16; on a CPU the
section runs a few hundred texts and only reports.
"""

from __future__ import annotations

import statistics
import tempfile

from analysis.bench.common import BenchSettings, bench_model, bench_texts, floor, median_time, our_curve, row

GOAL_TEXTS_PER_S = 20_000


def _sizes(s: BenchSettings, cuda: bool) -> tuple[int, list[int], int]:
    """(number of texts, batch sizes, repetitions) for this device."""
    if cuda:
        return (4000 if s.quick else 12000), [32, 128, 512], s.reps or 3
    return (128 if s.quick else 256), [32], s.reps or 2


def random_encoder(folder: str, tokenizer, layers: int = 12, d: int = 768, seed: int = 0) -> str:
    """Save a randomly initialised BERT (``layers`` layers, width ``d``) and ``tokenizer`` into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=max(1, d // 64),  # 64-wide heads, as in BERT-base
        intermediate_size=4 * d,
        max_position_embeddings=512,
    )
    BertModel(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bench_encoder(s: BenchSettings) -> dict:
    """Texts/s of the curve, its floor and tokenising alone on a random encoder, per dtype and batch size."""
    import numpy as np
    from transformers import AutoTokenizer

    from analysis.models.load import resolve_device, resolve_dtype, resolve_model

    dev = resolve_device(s.device)
    cuda = dev.startswith("cuda")
    n, batch_sizes, reps = _sizes(s, cuda)
    texts, labels = bench_texts(s, min(n, 12000))
    while len(texts) < n:  # the task has about 12.8k texts; repeat them for larger n
        texts, labels = texts + texts[: n - len(texts)], np.concatenate([labels, labels[: n - len(labels)]])
    dtypes = [s.dtype]  # as the user gives it ("auto": bf16 autocast on a GPU); the rows record the resolved one
    if cuda and resolve_dtype(s.dtype, dev) != "bfloat16":
        dtypes.append("bfloat16")  # weights cast to bf16 too, beside the autocast default
    tok = AutoTokenizer.from_pretrained(resolve_model(s.model).location)
    tokens = float(np.mean([len(x) for x in tok(list(texts[:2000]), truncation=True, max_length=128)["input_ids"]]))
    layers, d = s.encoder_shape
    with tempfile.TemporaryDirectory() as tmp:
        folder = random_encoder(tmp, tok, layers=layers, d=d)
        rows = [r for dtype in dtypes for r in _encoder_rows(folder, dev, dtype, texts, labels, batch_sizes, reps)]
    best = max(rows, key=lambda r: float(r["curve_texts_per_s"]))
    row("encoder best", f"{best['curve_texts_per_s']:,.0f} texts/s ({best['dtype']}, batch {best['batch_size']})")
    return {
        "encoder": {
            "layers": layers,
            "hidden_size": d,
            "n": n,
            "reps": reps,
            "mean_tokens": tokens,
            "tokenizer_of": s.label(s.model),
            "texts": "Rotten Tomatoes" if s.data is None else s.label(s.data),
            "goal_texts_per_s": GOAL_TEXTS_PER_S if cuda else None,
            "rows": rows,
            "best": best,
        },
        "encoder_curve_texts_per_s": best["curve_texts_per_s"],
    }


def _encoder_rows(folder: str, dev: str, dtype: str, texts, labels, batch_sizes: list[int], reps: int) -> list[dict]:
    """One row per batch size: the model in ``folder`` loaded in ``dtype``, curve / floor / tokenising alternating."""
    from analysis.models.batching import make_batches
    from analysis.models.load import resolve_dtype
    from analysis.pipeline import cached_model

    n = len(texts)
    rows = []
    m, mtok, d = bench_model(folder, dev, dtype)
    for bs in batch_sizes:
        w = max(4 * bs, 512)  # warm up, with enough texts for the tokenizer's probe (batching._encode)
        our_curve(m, mtok, texts[:w], labels[:w], device=d, batch_size=bs)
        t_curve, t_floor, t_batch = [], [], []
        for _ in range(reps):  # alternate so drift hits all three
            t_curve.append(median_time(our_curve, 1, m, mtok, texts, labels, device=d, batch_size=bs))
            t_floor.append(median_time(floor, 1, m, mtok, texts, device=d, batch_size=bs))
            t_batch.append(median_time(make_batches, 1, mtok, texts, None, max_length=128, batch_size=bs))
        c, f, b = statistics.median(t_curve), statistics.median(t_floor), statistics.median(t_batch)
        r = {
            "dtype": resolve_dtype(dtype, dev),
            "batch_size": bs,
            "curve_s": c,
            "floor_s": f,
            "batching_s": b,
            "curve_texts_per_s": n / c,
            "floor_texts_per_s": n / f,
            "batching_texts_per_s": n / b,
        }
        rows.append(r)
        row(
            f"encoder {m.config.num_hidden_layers}x{m.config.hidden_size} {r['dtype']} b={bs}",
            f"curve {n / c:,.0f} texts/s  floor {n / f:,.0f}  tokenise+pad {n / b:,.0f}",
        )
    del m
    cached_model.cache_clear()  # the random model's folder goes with tmp
    return rows


def encoder_headlines(res: dict) -> list[tuple]:
    """``key(...)`` arguments of the headline table for this section's key."""
    e = res.get("encoder") or {}
    if not e:
        return []
    b = e["best"]
    goal = e.get("goal_texts_per_s")
    return [
        (
            f"curve texts/s, random {e['layers']}-layer d={e['hidden_size']} BERT, {b['dtype']}, "
            f"batch {b['batch_size']}, ~{e['mean_tokens']:.0f} tokens (`encoder_curve_texts_per_s`)",
            "encoder_curve_texts_per_s",
            ",.0f",
            f"≥ {goal:,} on a GPU" if goal else "(GPU goal)",
            (lambda v: v >= goal) if goal else None,
        )
    ]


def encoder_report_lines(res: dict) -> list[str]:
    """The section's table: texts/s of the curve, the bare forward pass and tokenising per dtype and batch size."""
    e = res.get("encoder") or {}
    if not e:
        return []
    L = [
        "",
        "## Throughput of the all-layer curve on a BERT-base-sized encoder",
        "",
        f"A randomly initialised {e['layers']}-layer, d={e['hidden_size']} BERT (loaded from a folder like any "
        f"model), {e['n']:,} {e.get('texts', 'Rotten Tomatoes')} texts of {e['mean_tokens']:.1f} tokens on average, "
        f"tokenizer of `{e['tokenizer_of']}`; medians of {e['reps']} alternating repetitions. "
        "`curve` is texts → ν of every layer (tokenising, one forward pass with every layer pooled, the states "
        "to the CPU, ν); `floor` the bare forward pass over the same batches; `tokenise+pad` the CPU work alone.",
        "",
        "| dtype | batch | curve texts/s | floor texts/s | tokenise+pad texts/s | curve ÷ floor time |",
        "|---|---|---|---|---|---|",
    ]
    for r in e["rows"]:
        L.append(
            f"| {r['dtype']} | {r['batch_size']} | {r['curve_texts_per_s']:,.0f} | {r['floor_texts_per_s']:,.0f} | "
            f"{r['batching_texts_per_s']:,.0f} | {r['curve_s'] / r['floor_s']:.2f} |"
        )
    return L
