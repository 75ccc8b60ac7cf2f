"""Layer cards through the pipeline: cost and gradient columns from the model, the disk cache.

:func:`compute_cards` takes an :class:`~analysis.pipeline.AnalysisConfig` and a
:class:`~analysis.cards.scores.CardsConfig`, gets the pooled states (disk cache or one forward pass),
computes the cards (:func:`~analysis.cards.scores.layer_cards`) and stores them under kind ``"cards"``,
keyed by the states key and ``asdict(CardsConfig)``.

Cost (one definition for every layer): the Training page's cost model
(:func:`~analysis.training.cost.cost`) for a classifier on layer ℓ with blocks 1..ℓ kept and
only block ℓ (and the head) tuned, ``Selection(ℓ, (ℓ,))``; layer 0 is the embeddings with a
head, nothing else tuned. ``params_kept`` is the truncated model's parameter count plus the
head, ``flops_per_example`` the training FLOPs of one example (forward, backward to block ℓ,
weight gradients of block ℓ and the head) at the sample's mean token length.

Gradient norms: a classifier on the top layer with every block trainable
(``build_classifier(select("full", L, 1))``), in eval mode (no dropout), a few batches of the
sample, loss averaged over them, one backward pass each and no optimizer step; per block
‖∇W‖ / ‖W‖ over all its weights (auto-RGN, Lee et al. 2023), layer 0 = the embeddings. In float32,
without autocast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from analysis.cards.scores import CARDS_VERSION, CardsConfig, LayerCards, LayerProgress, layer_cards
from analysis.pipeline import AnalysisConfig, StatesResult, cached_model, get_states, resolve_target
from analysis.selectors import state_scores
from analysis.store.cache import DiskCache, make_key

_ARRAYS = ("variability", "probe_accuracy", "probe_macro_f1", "knn_accuracy")
_OPTIONAL = ("params_kept", "flops_per_example", "grad_norm")
_FITS = ("probe_converged", "probe_iterations")  # (layers, folds) each


def mean_tokens(tokenizer, texts, pairs, max_length: int) -> float:
    """Mean token length (special tokens included) of at most 2000 texts."""
    from analysis.models.batching import tokenize

    texts = list(texts)[:2000]
    enc = tokenize(tokenizer, texts, None if pairs is None else list(pairs)[:2000], max_length)
    return float(np.mean([len(x) for x in enc["input_ids"]]))


def layer_costs(base_model, n_layers: int, seq_len: float, num_labels: int) -> tuple[list[int], list[float]]:
    """(params_kept, flops_per_example) for a classifier on each layer 0..L (see the module doc)."""
    from analysis.training.cost import cost
    from analysis.training.selection import Selection

    params, flops = [], []
    for layer in range(n_layers + 1):
        c = cost(base_model, Selection(layer, (layer,) if layer else ()), seq_len, num_labels)
        params.append(int(c["total_params"]))
        flops.append(float(c["flops_per_example"]))
    return params, flops


def grad_norms(
    base_model, tokenizer, states: StatesResult, cfg: AnalysisConfig, cards_cfg: CardsConfig, device: str
) -> list[float]:
    """Relative gradient norm ‖∇W‖/‖W‖ per layer (0 = embeddings) from a few batches (see the module doc)."""
    import torch

    from analysis.models.batching import make_batches
    from analysis.models.layers import layer_list
    from analysis.training import build_classifier, select

    L = states.n_layers
    with torch.random.fork_rng(devices=[]):  # the head's initialisation seeded: the same norms on every call
        torch.manual_seed(cards_cfg.seed)
        clf = build_classifier(base_model, select("full", L, 1), len(states.label_names), cfg.pooling).to(device)
    clf.eval()  # no dropout: the same numbers every time
    rng = np.random.default_rng(cards_cfg.seed)
    idx = np.sort(rng.permutation(len(states.labels))[: cards_cfg.grad_batches * cards_cfg.grad_batch_size])
    pairs = None if states.pairs is None else [states.pairs[i] for i in idx]
    batches = make_batches(
        tokenizer,
        [states.texts[i] for i in idx],
        pairs,
        max_length=cfg.max_length,
        batch_size=cards_cfg.grad_batch_size,
    )
    labels = torch.as_tensor(states.labels[idx], dtype=torch.long)
    for b in batches:
        inputs = {k: v.to(device) for k, v in b.tensors.items()}
        out = clf(**inputs, labels=labels[torch.as_tensor(b.index)].to(device))
        (out["loss"] / len(batches)).backward()
    enc = clf.encoder
    emb = getattr(enc, "embeddings", None) or enc.get_input_embeddings()
    groups = [emb] + list(layer_list(enc)[1])
    norms = []
    for g in groups:
        w = sum(float(p.detach().float().square().sum()) for p in g.parameters())
        grad_sq = sum(float(p.grad.float().square().sum()) for p in g.parameters() if p.grad is not None)
        norms.append(float(np.sqrt(grad_sq) / np.sqrt(w)) if w > 0 else 0.0)
    del clf
    return norms


def cards_key(states_key: str, cards_cfg: CardsConfig) -> tuple[str, dict]:
    """(cache key, the dict it hashes) of the cards of the states under ``states_key``."""
    conf = {"what": "cards", "version": CARDS_VERSION, "states": states_key, **asdict(cards_cfg)}
    return make_key(conf), conf


def _save(cache: DiskCache, key: str, conf: dict, cards: LayerCards, describe: str) -> None:
    arrays = {name: np.asarray(getattr(cards, name), dtype=np.float64) for name in _ARRAYS}
    arrays.update({n: np.asarray(getattr(cards, n), dtype=np.float64) for n in _OPTIONAL if getattr(cards, n)})
    arrays.update({f"sel__{n}": _nan(v) for n, v in (cards.selectors or {}).items()})
    arrays.update({n: np.asarray(getattr(cards, n), dtype=np.int64) for n in _FITS if getattr(cards, n) is not None})
    scalars = {"rank_agreement": cards.rank_agreement, "band": cards.band, "settings": cards.settings}
    cache.save(
        "cards", key, arrays, blobs={"cards": scalars}, meta={"describe": describe}, version=CARDS_VERSION, config=conf
    )


def _nan(scores: list) -> np.ndarray:
    """A score column with None (a layer without a score) as NaN, for the array store."""
    return np.array([np.nan if v is None else v for v in scores], dtype=np.float64)


def _load(cache: DiskCache, key: str) -> LayerCards | None:
    hit = cache.load("cards", key, version=CARDS_VERSION)
    if hit is None:
        return None
    arrays, blobs, _ = hit
    blob = blobs["cards"]
    cols = {name: arrays[name].tolist() for name in _ARRAYS}
    opt = {n: arrays[n].tolist() for n in _OPTIONAL if n in arrays}
    if "params_kept" in opt:
        opt["params_kept"] = [int(p) for p in opt["params_kept"]]
    if "probe_converged" in arrays:
        opt["probe_converged"] = arrays["probe_converged"].astype(bool).tolist()
    if "probe_iterations" in arrays:
        opt["probe_iterations"] = arrays["probe_iterations"].astype(int).tolist()
    band = blob["band"]
    sel = {n[5:]: [None if np.isnan(v) else float(v) for v in a] for n, a in arrays.items() if n.startswith("sel__")}
    return LayerCards(
        selectors=sel or None,
        layers=list(range(len(cols["variability"]))),
        rank_agreement=blob["rank_agreement"],
        band=None if band is None else (band[0], band[1]),
        settings=blob["settings"],
        cache_hit=True,
        **cols,
        **opt,
    )


def compute_cards(
    cfg: AnalysisConfig,
    cards_cfg: CardsConfig | None = None,
    *,
    cache: DiskCache | None = None,
    use_cache: bool = True,
    content: bytes | None = None,
    progress: LayerProgress | None = None,
    loader: Callable | None = None,
    states: StatesResult | None = None,
) -> tuple[LayerCards, StatesResult]:
    """The cards of ``cfg``'s sample: from the disk cache, or from its pooled states and stored.

    ``states`` skips :func:`get_states` (the caller already has them); ``progress(done, total)``
    sees the layers as they finish; ``loader(ref, device, dtype, trust_remote_code)`` loads the
    model for the cost and gradient columns (default :func:`~analysis.pipeline.cached_model`,
    which shares the model that extracted the states).
    """
    cards_cfg = cards_cfg or CardsConfig()
    cache = cache or DiskCache()
    states = states or get_states(cfg, cache=cache, use_cache=use_cache, content=content, loader=loader)
    key, conf = cards_key(states.key, cards_cfg)
    if use_cache and (hit := _load(cache, key)) is not None:
        return hit, states
    target = resolve_target(cfg, cache.root)
    t0 = time.perf_counter()
    cards = layer_cards(
        states.states, states.labels, cards_cfg, label_names=states.label_names, progress=progress, device=target.device
    )
    cards.selectors = state_scores(states.states, states.labels)
    t1 = time.perf_counter()
    model, tok = (loader or cached_model)(target.ref, target.device, target.dtype, cfg.trust_remote_code)
    seq_len = mean_tokens(tok, states.texts, states.pairs, cfg.max_length)
    cards.params_kept, cards.flops_per_example = layer_costs(model, states.n_layers, seq_len, len(states.label_names))
    cards.settings["seq_len"] = seq_len
    t2 = time.perf_counter()
    if cards_cfg.grad:
        cards.grad_norm = grad_norms(model, tok, states, cfg, cards_cfg, target.device)
    cards.seconds.update(load_and_cost=t2 - t1, grad=time.perf_counter() - t2, total=time.perf_counter() - t0)
    if use_cache:
        describe = (
            f"{cfg.model} · {cfg.task.label()} · n={len(states.labels)} · folds={cards_cfg.folds} k={cards_cfg.k}"
        )
        describe += " · grad" if cards_cfg.grad else ""
        with cache.lock("cards", key):
            _save(cache, key, conf, cards, describe)
    return cards, states
