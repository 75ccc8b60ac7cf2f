"""The frozen-prefix cache: the states entering the lowest tuned block t, computed once per text.

The embeddings and blocks 1..t-1 never change during a run and run in eval mode
(:meth:`~analysis.training.model.VariscopeClassifier.train`), so their output for a
text is the same at every step. :func:`compute_prefix` runs them once over the
training and held-out texts (hooks read the input of block t; the pass stops there),
:func:`attach` then replaces blocks 1..t-1 of the classifier's encoder by modules
that hand the cached states on. Each step still calls the model's own forward, so
the masks (Gemma 3's sliding windows from the model's masking helpers, per the
attention implementation), rotary tables chosen by the absolute layer type, MPNet's
relative attention bias and the final norm are built exactly as without the cache;
only blocks t..ℓ* do work. The embedding lookup still runs (its output is discarded).

States are kept per text at its own length: one ``(tokens, d)`` array and offsets.
They stay in memory up to a budget, else they go to a ``prefix`` entry of the disk
cache (written atomically) and are read memory-mapped.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from analysis.training.config import PREFIX_MEMORY_BYTES

# model_type -> whether its blocks return a tuple (the encoder reads element 0). These architectures'
# encoder forward is tested to give the same loss and logits through the cache (tests/training/test_prefix_cache.py).
EXACT = {"bert": False, "mpnet": True, "llama": False, "gemma3_text": False}
PREFIX_VERSION = 1
CAPTURE_BATCH = 32
MEMO_ENTRIES = 16  # a sweep needs 4 (training and held-out texts of its final runs and validation split) at two
# blocks; a reproduction 2 per seed (each seed draws its own sample) at two blocks


def unsupported(encoder) -> str | None:
    """None when the cached path is exact for ``encoder``'s architecture, else one line saying why not."""
    mt = getattr(encoder.config, "model_type", "?")
    if mt not in EXACT:
        return (
            f"prefix cache off: {mt} is not among the architectures tested exact through it "
            f"({', '.join(sorted(EXACT))}); training runs through the whole prefix"
        )
    return None


@dataclass
class PrefixStates:
    """Per-text states entering one block: ``states[offsets[j]:offsets[j+1]]`` is local text j's (len_j, d).

    ``rows``: None when local text j is text j of the run, else the sorted ids of the texts held
    (a process of several holds only the rows it reads: :class:`analysis.training.data.RankRows`).
    """

    states: np.ndarray
    offsets: np.ndarray
    where: str = "memory"  # or "disk" (memory-mapped cache entry)
    hold: object = None  # on disk: the cache's hold on the entry (closed with this object), so no budget deletes it
    rows: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return int(self.states.nbytes)

    def local(self, idx) -> np.ndarray:
        """The local positions of the texts ``idx`` (ids of the run); a text not held is an error, not a wrong row."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.rows is None:
            return idx
        j = np.minimum(np.searchsorted(self.rows, idx), max(len(self.rows) - 1, 0))
        if len(idx) and (not len(self.rows) or np.any(self.rows[j] != idx)):
            missing = sorted(set(idx.tolist()) - set(self.rows.tolist()))
            raise RuntimeError(f"texts {missing[:5]} are not among the {len(self.rows)} this process's prefix holds")
        return j

    def batch(self, idx, length: int):
        """(len(idx), length, d) float tensor, text i's rows first, zeros after (the padding); ``idx``: run ids."""
        import torch

        out = torch.zeros(len(idx), length, self.states.shape[1], dtype=_torch_dtype(self.states.dtype))
        for r, i in enumerate(self.local(idx)):
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            out[r, : b - a] = torch.from_numpy(np.array(self.states[a:b]))  # a copy: memory maps are read-only
        return out


def _torch_dtype(dt):
    import torch

    return torch.float16 if dt == np.float16 else torch.float32


class _StopPass(Exception):
    """Raised by the hook of the highest block asked for: the rest of the model need not run."""


def compute_prefix(
    encoder, enc: dict, ts: list[int], *, device: str, budget: int | None = None, store=None, source=None
):
    """{t: PrefixStates} of the texts in ``enc`` (a tokenizer output with ``_pad_id``), one pass for all ``ts``.

    encoder : the model whose blocks 1..max(ts)-1 are the frozen prefix (run in eval mode, no gradient).
    budget : bytes the states may take in memory (default ``PREFIX_MEMORY_BYTES``); above it each t goes to
        ``store(t, states, offsets) -> PrefixStates`` (a disk-cache writer) when given.
    source : ``(s, PrefixStates)`` with s < min(ts), the same texts' states entering block s: chaining, only
        blocks s..max(ts)-1 run (the model's own forward with blocks 1..s-1 stood in for, as in training), so a
        sweep climbing the layers runs each frozen block once per text, holding one layer's states at a time.
    """
    import torch

    from analysis.models.batching import pad_rows
    from analysis.models.layers import layer_list

    budget = PREFIX_MEMORY_BYTES if budget is None else budget
    blocks = layer_list(encoder)[1]
    if not ts or min(ts) < 2 or max(ts) > len(blocks) + 1:
        raise ValueError(f"prefix blocks must lie in 2..{len(blocks) + 1}, got {ts}")
    lengths = np.array([len(x) for x in enc["input_ids"]])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    d = encoder.config.hidden_size
    dt = np.float16 if next(encoder.parameters()).dtype == torch.float16 else np.float32
    out = {t: np.empty((int(offsets[-1]), d), dtype=dt) for t in ts}
    rows: np.ndarray = np.empty(0, dtype=np.int64)
    top = max(ts)

    def grab(t):
        def hook(module, args, output):  # output of block t-1 = input of block t
            h = output[0] if isinstance(output, tuple) else output
            h = h.detach().float().cpu().numpy().astype(dt, copy=False)
            for r, i in enumerate(rows):
                out[t][offsets[i] : offsets[i + 1]] = h[r, : lengths[i]]
            if t == top:
                raise _StopPass

        return hook

    if source is not None and not 2 <= source[0] < min(ts):
        raise ValueError(f"a chained pass starts below the blocks asked for, got {source[0]} for {ts}")
    as_tuple = EXACT[encoder.config.model_type] if source is not None else False
    kept = list(blocks)
    handles = []
    was_training = encoder.training
    order = np.argsort(-lengths, kind="stable")  # similar lengths together: little padding
    amp = getattr(encoder, "variscope_autocast", None)
    try:
        handles = [blocks[t - 2].register_forward_hook(grab(t)) for t in ts]
        inject = _stand_in(blocks, source[0], as_tuple) if source is not None else None
        encoder.eval()
        with torch.inference_mode(), _autocast(device, amp):
            for s in range(0, len(order), CAPTURE_BATCH):
                rows = order[s : s + CAPTURE_BATCH]
                b = pad_rows(enc, rows, enc["_pad_id"]).tensors
                kw = {k: v.to(device) for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                if inject is not None:
                    inject.states = source[1].batch(rows, int(b["input_ids"].shape[1]))
                with contextlib.suppress(_StopPass):
                    encoder(**kw, return_dict=True)
    finally:
        for h in handles:
            h.remove()
        for i, blk in enumerate(kept):
            blocks[i] = blk
        encoder.train(was_training)
    res = {}
    for t, arr in out.items():
        if arr.nbytes > budget and store is not None:
            res[t] = store(t, arr, offsets)
        else:
            res[t] = PrefixStates(arr, offsets)
    return res


def _autocast(device: str, amp: str | None):
    import torch

    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(str(device).split(":")[0], dtype=getattr(torch, amp))


def _modules():
    """The two modules that stand in for blocks 1..t-1 in cached mode (built lazily: torch imports late)."""
    from torch import nn

    class Inject(nn.Module):
        """Stands in for block 1: returns the cached states of the batch (set by the classifier's forward)."""

        def __init__(self, as_tuple: bool):
            super().__init__()
            self.as_tuple = as_tuple
            self.states = None

        def forward(self, hidden_states, *args, **kwargs):
            if self.states is None:
                raise RuntimeError("the prefix cache is attached but the batch carries no prefix_states")
            h = self.states.to(device=hidden_states.device, dtype=hidden_states.dtype)
            return (h,) if self.as_tuple else h

    class Pass(nn.Module):
        """Stands in for blocks 2..t-1: hands its input on."""

        def __init__(self, as_tuple: bool):
            super().__init__()
            self.as_tuple = as_tuple

        def forward(self, hidden_states, *args, **kwargs):
            return (hidden_states,) if self.as_tuple else hidden_states

    return Inject, Pass


def _stand_in(blocks, t: int, as_tuple: bool):
    """Blocks 1..t-1 of the module list ``blocks`` replaced by the stand-ins (the caller keeps the originals)."""
    Inject, Pass = _modules()
    inject = Inject(as_tuple)
    for i in range(t - 1):
        blocks[i] = inject if i == 0 else Pass(as_tuple)
    return inject


def attach(model, t: int) -> None:
    """Put the cached-mode stand-ins in place of blocks 1..t-1 of ``model.encoder`` (the originals are kept)."""
    from analysis.models.layers import layer_list

    blocks = layer_list(model.encoder)[1]
    kept = [blocks[i] for i in range(t - 1)]
    inject = _stand_in(blocks, t, EXACT[model.encoder.config.model_type])
    object.__setattr__(model, "_prefix_blocks", kept)  # not registered: no parameters, no state_dict entries
    object.__setattr__(model, "_inject", inject)


def detach(model) -> None:
    """Put the real blocks 1..t-1 back (after training: exports, re-measurement and predictions need them)."""
    from analysis.models.layers import layer_list

    kept = getattr(model, "_prefix_blocks", None)
    if not kept:
        return
    blocks = layer_list(model.encoder)[1]
    for i, b in enumerate(kept):
        blocks[i] = b
    object.__setattr__(model, "_prefix_blocks", None)
    object.__setattr__(model, "_inject", None)


def prepare(
    model,
    plan,
    ref,
    device: str,
    progress=None,
    *,
    on: bool = True,
    budget: int | None = None,
    cache=None,
    rows=None,
) -> dict:
    """Compute the prefix states of ``plan``'s texts and attach the cache to ``model``; the run JSON's record.

    Returns ``{"used": True, "block": t, "where": "memory"|"disk", "bytes": n, "rows_per_rank": {"train":
    [n_0, …], "eval": [m_0, …]}}`` or ``{"used": False, "why": ...}`` (the one line is also sent to
    ``progress``). ``ref`` (a ModelRef) keys disk entries. ``rows`` (a :class:`~analysis.training.data.RankRows`,
    with several processes): only the training and held-out texts this process reads are computed and held,
    under keys of their own.
    """
    if not on:
        return {"used": False, "why": "turned off"}
    t = model.lowest_trained
    if t < 2:
        return {"used": False, "why": "nothing is frozen below the lowest trained block"}
    why = unsupported(model.encoder)
    if why:
        if progress:
            progress(why)
        return {"used": False, "why": why}
    budget = PREFIX_MEMORY_BYTES if budget is None else budget
    ids = (None, None) if rows is None else (rows.train, rows.eval)
    encs = [enc if i is None else _subset(enc, i) for enc, i in zip((plan.enc_tr, plan.enc_ev), ids, strict=True)]
    states, how = [], []
    for enc, i in zip(encs, ids, strict=True):
        base = _key(model.encoder, ref, enc, device, rows)
        store = _DiskStore(cache, base)
        got, came = _states(model.encoder, enc, t, base, store, device, budget)
        got = replace(got, rows=i)  # a run's view (its text ids); the memo keeps positions within the subset
        budget -= got.nbytes if got.where == "memory" else 0
        states.append(got)
        how.append(came)
    plan.prefix_tr, plan.prefix_ev = states
    if progress:
        n = sum(len(enc["input_ids"]) for enc in encs)
        progress(f"prefix cache: the states entering block {t} of {n} texts ({', '.join(how)})")
    attach(model, t)
    where = "disk" if "disk" in {s.where for s in states} else "memory"
    counts = [len(enc["input_ids"]) for enc in encs]
    per_rank = rows.per_rank if rows is not None else {"train": counts[:1], "eval": counts[1:]}
    return {
        "used": True, "block": t, "where": where, "bytes": sum(s.nbytes for s in states),
        "rows_per_rank": per_rank, "source": how,
    }  # fmt: skip


# States computed in this process, kept for the next run on the same texts and model (a sweep's seeds and
# learning rates at one layer, a grid's k = 1..3): (base key, t) -> PrefixStates, least recently used first.
# Kept only while a caller that runs many trainings says so (:func:`keep_states`: a sweep, a reproduction), so
# a long-lived process (the app) holds no states between its runs.
_MEMO: OrderedDict[tuple[str, int], PrefixStates] = OrderedDict()
_MEMO_LOCK = threading.Lock()
_KEEPERS = [0]


@contextlib.contextmanager
def keep_states():
    """Within this block, runs of this process keep their prefix states for the next run (memo and chaining);
    on leaving the outermost one, every kept state (and its hold on a disk entry) is let go."""
    with _MEMO_LOCK:
        _KEEPERS[0] += 1
    try:
        yield
    finally:
        with _MEMO_LOCK:
            _KEEPERS[0] -= 1
            if _KEEPERS[0] == 0:
                _MEMO.clear()


def _states(encoder, enc: dict, t: int, base: dict, store, device: str, budget: int) -> tuple[PrefixStates, str]:
    """The states entering block t and where they came from: "memo" (this process), "disk", "chained from s"
    (blocks s..t-1 run on the memoised input of block s < t) or "computed" (the whole prefix ran)."""
    from analysis.store.cache import make_key

    b = make_key(base)
    with _MEMO_LOCK:
        hit = _MEMO.get((b, t))
        if hit is not None:
            _MEMO.move_to_end((b, t))
            return hit, "memo"
        lower = max((s for (bb, s) in _MEMO if bb == b and s < t), default=None)
        src = None if lower is None else (lower, _MEMO[(b, lower)])
    got = store.load(t)
    came = "disk"
    if got is None:
        got = compute_prefix(encoder, enc, [t], device=device, budget=budget, store=store, source=src)[t]
        came = "computed" if src is None else f"chained from {src[0]}"
    _remember(b, t, got)
    return got, came


def _remember(b: str, t: int, got: PrefixStates) -> None:
    """Keep ``got`` for later runs; forget the least recently used states beyond ``PREFIX_MEMORY_BYTES``."""
    if got.where == "memory" and got.nbytes > PREFIX_MEMORY_BYTES:
        return  # larger than the whole budget: keeping it would push out everything else
    with _MEMO_LOCK:
        if not _KEEPERS[0]:
            return
        _MEMO[(b, t)] = got
        _MEMO.move_to_end((b, t))
        while len(_MEMO) > MEMO_ENTRIES or (
            sum(v.nbytes for v in _MEMO.values() if v.where == "memory") > PREFIX_MEMORY_BYTES and len(_MEMO) > 1
        ):
            _MEMO.popitem(last=False)  # a disk entry's hold on the cache goes with it


def forget() -> None:
    """Drop every memoised prefix state of this process (tests; a caller that wants the memory back)."""
    with _MEMO_LOCK:
        _MEMO.clear()


def _subset(enc: dict, ids: np.ndarray) -> dict:
    """The tokenizer output ``enc`` (lists per text, and ``_pad_id``) of the texts ``ids`` only, in that order."""
    return {k: (v if k.startswith("_") else [v[i] for i in ids.tolist()]) for k, v in enc.items()}


def _key(encoder, ref, enc: dict, device: str, rows=None) -> dict:
    """Everything that changes the states but t: weights, token ids (tokenizer, texts, pairs, max length), dtype…

    ``rows`` (several processes): the process's own entry, ``"process r of w"`` (the ids hashed are its texts')."""
    import hashlib

    h = hashlib.sha256()
    for k in ("input_ids", "token_type_ids"):
        for row in enc.get(k) or []:
            h.update(np.asarray(row, dtype=np.int64).tobytes() + b"|")
        h.update(k.encode())
    p = next(encoder.parameters())
    return {
        "what": "prefix",
        "model": ref.fingerprint,
        "ids": h.hexdigest(),
        "n": len(enc["input_ids"]),
        "dtype": str(p.dtype),
        "autocast": getattr(encoder, "variscope_autocast", None),
        "device": str(device).split(":")[0],
        "attention": getattr(encoder.config, "_attn_implementation", None),
        "code": PREFIX_VERSION,
        **({} if rows is None else {"rows": f"process {rows.rank} of {rows.world}"}),
    }


class _DiskStore:
    """``store(t, states, offsets)``: one t's states into a ``prefix`` disk-cache entry, read back memory-mapped."""

    def __init__(self, cache, key: dict):
        self.cache, self.base = cache, key

    def _cache(self):
        from analysis.store.cache import DiskCache

        return self.cache if self.cache is not None else DiskCache()

    def key(self, t: int) -> str:
        from analysis.store.cache import make_key

        return make_key({**self.base, "t": t})

    def load(self, t: int) -> PrefixStates | None:
        cache = self._cache()
        hold = cache.hold("prefix", self.key(t))  # before reading: the budget of another process leaves it alone
        hit = cache.load("prefix", self.key(t), version=PREFIX_VERSION, mmap=True)
        if hit is None:
            if hold is not None:
                hold.close()
            return None
        return PrefixStates(hit[0]["states"], hit[0]["offsets"], "disk", hold)

    def __call__(self, t: int, states: np.ndarray, offsets: np.ndarray) -> PrefixStates:
        cache = self._cache()
        desc = f"prefix states entering block {t}: {len(offsets) - 1} texts, {states.nbytes / 2**20:.0f} MiB"
        with cache.lock("prefix", self.key(t)):
            if (hit := self.load(t)) is None:
                cache.save(
                    "prefix", self.key(t), {"states": states, "offsets": offsets},
                    version=PREFIX_VERSION, meta={"describe": desc}, config={**self.base, "t": t},
                )  # fmt: skip
                hit = self.load(t)
        if hit is None:  # the entry could not be read back: keep the states in memory
            return PrefixStates(states, offsets)
        return hit
