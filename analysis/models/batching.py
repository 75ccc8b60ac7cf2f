"""Texts to padded, length-sorted batches: tokenising once, padding by vectorised gathers.

``make_batches`` is what :func:`analysis.models.hidden_states.for_each_pooled` (the one loop over
batches) and the benchmarks' bare forward pass feed the model; ``tokenize`` and ``pad_rows``
give the training collator the same tokens and padding.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.errors import VariscopeError


@dataclass
class Batch:
    """Indices of its texts in the input order, and padded tensors (on CPU)."""

    index: np.ndarray
    tensors: dict


def tokenize(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> dict:
    """Tokenize without padding; returns lists per text incl. special_tokens_mask."""
    if max_length is None or max_length < 1:
        raise VariscopeError(f"max length must be at least 1 token, got {max_length}")
    limit = _model_limit(tokenizer)
    if limit and max_length > limit:
        raise VariscopeError(f"max length {max_length} is above this model's limit of {limit} tokens")
    kw = dict(truncation=True, max_length=max_length, return_special_tokens_mask=True, return_attention_mask=True)
    texts = list(texts)
    with tokenizer_lock(tokenizer):  # __call__ sets the shared Rust tokenizer's truncation, then encodes
        if pairs is not None:
            return tokenizer(texts, list(pairs), **kw)
        return tokenizer(texts, **kw)


_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer) -> threading.RLock:
    """One lock per tokenizer object: setting its truncation and encoding must not interleave with another
    thread's (the app's sessions share one cached tokenizer; two max lengths would mix)."""
    lock = tokenizer.__dict__.get("_variscope_lock")
    if lock is None:
        with _LOCKS_GUARD:
            lock = tokenizer.__dict__.setdefault("_variscope_lock", threading.RLock())
    return lock


def _model_limit(tokenizer) -> int | None:
    m = getattr(tokenizer, "model_max_length", None)
    return int(m) if m and m < 1_000_000 else None


def make_batches(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 32,
    sort: bool = True,
) -> list[Batch]:
    """Length-sorted (longest first), right-padded batches of at most ``batch_size`` texts."""
    if batch_size < 1:
        raise VariscopeError(f"batch size must be at least 1, got {batch_size}")
    flat = _encode(tokenizer, list(texts), None if pairs is None else list(pairs), max_length)
    order = np.argsort(-flat.lengths, kind="stable") if sort else np.arange(len(flat.lengths))
    return [flat.pad(order[s : s + batch_size], tokenizer.pad_token_id) for s in range(0, len(order), batch_size)]


_PAD_KEYS: dict[str, int | None] = {
    "input_ids": None,
    "attention_mask": 0,
    "special_tokens_mask": 1,
    "token_type_ids": 0,
}  # fill values


class _Flat:
    """Token lists as one flat int64 array per key (``lengths`` tokens per row), padded by vectorised gathers.

    Gathering each batch with numpy is several times faster than filling tensors row by
    row, which mattered once a GPU does the forward pass.
    """

    def __init__(self, lengths: np.ndarray, flat: dict[str, np.ndarray], rows: np.ndarray):
        self.lengths, self.flat, self.rows = lengths, flat, rows
        self.starts = np.zeros_like(lengths)
        np.cumsum(lengths[:-1], out=self.starts[1:])

    @classmethod
    def from_enc(cls, enc, rows: np.ndarray | None = None) -> _Flat:
        """From a tokenizer's output (lists per text), rows ``rows`` (all by default) in that order."""
        ids = enc["input_ids"]
        rows = np.arange(len(ids)) if rows is None else np.asarray(rows)
        lengths = np.fromiter((len(ids[i]) for i in rows), np.int64, count=len(rows))
        total = int(lengths.sum())
        chain = itertools.chain.from_iterable
        flat = {k: np.fromiter(chain(enc[k][i] for i in rows), np.int64, total) for k in _PAD_KEYS if k in enc}
        return cls(lengths, flat, rows)

    @classmethod
    def from_encodings(cls, encs, keys: Sequence[str]) -> _Flat:
        """From the Rust tokenizer's ``Encoding`` objects (unpadded), with the keys of the Python tokenizer's output."""
        chain = itertools.chain.from_iterable
        lengths = np.fromiter((len(e) for e in encs), np.int64, count=len(encs))
        total = int(lengths.sum())
        attr = {"input_ids": "ids", "special_tokens_mask": "special_tokens_mask", "token_type_ids": "type_ids"}
        flat = {k: np.fromiter(chain(getattr(e, attr[k]) for e in encs), np.int64, total) for k in keys if k in attr}
        if "attention_mask" in keys:
            flat["attention_mask"] = np.ones(total, np.int64)  # unpadded: every token is real
        return cls(lengths, flat, np.arange(len(encs)))

    def pad(self, idx: np.ndarray, pad_id: int) -> Batch:
        """The batch of rows ``idx`` (positions in this object's rows), right-padded to its longest."""
        import torch

        n = self.lengths[idx]
        cols = np.arange(int(n.max()) if len(n) else 0)
        real = cols < n[:, None]
        gather = np.where(real, self.starts[idx][:, None] + cols, 0)
        t = {}
        for k, v in self.flat.items():
            f = _PAD_KEYS[k]
            fill = int(pad_id if f is None else f)
            vals = v[gather] if v.size else np.full(gather.shape, fill, np.int64)
            t[k] = torch.from_numpy(np.where(real, vals, fill).astype(np.int64, copy=False))
        if "special_tokens_mask" not in t:
            t["special_tokens_mask"] = torch.from_numpy((~real).astype(np.int64))
        return Batch(np.asarray(self.rows[idx]), t)

    def same_as(self, other: _Flat) -> bool:
        return (
            np.array_equal(self.lengths, other.lengths)
            and self.flat.keys() == other.flat.keys()
            and all(np.array_equal(v, other.flat[k]) for k, v in self.flat.items())
        )


def _encode(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> _Flat:
    """:func:`tokenize` as a :class:`_Flat`, through the Rust tokenizer directly where that gives the same tokens.

    The Python side of a fast tokenizer's ``__call__`` (building lists and dicts per text)
    costs more than the tokenising itself once the forward pass runs on a GPU. The Rust
    path is used only after it matched ``__call__`` exactly on a probe of these texts (and
    a long one that must be truncated); anything else falls back to ``__call__``.
    """
    if len(texts) >= 256 and _rust_ok(tokenizer, texts, pairs, max_length):
        out = _rust_encode(tokenizer, texts, pairs, max_length)
        if out is not None:
            return out
    return _Flat.from_enc(tokenize(tokenizer, texts, pairs, max_length))


def _rust_encode(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> _Flat | None:
    bt = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or bt is None:
        return None
    tokenize(tokenizer, texts[:1], None if pairs is None else pairs[:1], max_length)  # the same checks and errors
    keys = ["input_ids", "special_tokens_mask", "attention_mask"]
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
        keys.append("token_type_ids")
    with tokenizer_lock(tokenizer):
        old_trunc, old_pad = bt.truncation, bt.padding
        try:
            bt.no_padding()
            bt.enable_truncation(max_length, strategy="longest_first", direction=tokenizer.truncation_side)
            rows = texts if pairs is None else list(zip(texts, pairs, strict=True))
            encs = bt.encode_batch(rows, add_special_tokens=True)
        except Exception:  # an unusual tokenizer: the Python path decides
            return None
        finally:
            _restore(bt, old_trunc, old_pad)
    return _Flat.from_encodings(encs, keys)


def _restore(bt, trunc: dict | None, pad: dict | None) -> None:
    """Put back the Rust tokenizer's truncation and padding settings as they were."""
    if trunc is None:
        bt.no_truncation()
    else:
        bt.enable_truncation(**trunc)
    if pad is None:
        bt.no_padding()
    else:
        bt.enable_padding(**pad)


def _rust_ok(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> bool:
    """Whether the Rust path gives exactly the tokens of :func:`tokenize` on a probe of these texts (cached)."""
    key = (max_length, pairs is not None)
    seen = tokenizer.__dict__.setdefault("_variscope_rust_ok", {})
    if key not in seen:
        # longer than max_length in almost any tokenizer (checks the truncation), and capped: a fast tokenizer
        # computes every piece it cuts off, for a pair every combination of the two sides' pieces
        long = " ".join(t for t in texts[:400] if isinstance(t, str))[: 8 * max_length]
        probe = texts[:64] + [long, texts[0], long]
        ppairs = None if pairs is None else pairs[:64] + [pairs[0], long, long]
        fast = _rust_encode(tokenizer, probe, ppairs, max_length)
        seen[key] = fast is not None and fast.same_as(_Flat.from_enc(tokenize(tokenizer, probe, ppairs, max_length)))
    return seen[key]


def pad_rows(enc, idx: np.ndarray, pad_id: int) -> Batch:
    """The rows ``idx`` of a tokenizer's output as one right-padded batch (the training collator uses it)."""
    b = _Flat.from_enc(enc, idx).pad(np.arange(len(idx)), pad_id)
    return Batch(np.asarray(idx), b.tensors)
