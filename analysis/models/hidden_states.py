"""Pooled hidden states of every layer in one forward pass.

:func:`analysis.models.batching.make_batches` tokenizes once and groups texts into length-sorted,
padded batches; ``extract_states`` runs one forward pass per batch with
``output_hidden_states=True`` and pools every layer on the device, keeping
only the pooled vectors: an array of shape (L+1, N, d), index 0 being the
embedding output. This is the only loop over batches in Variscope's analysis;
the benchmarks reuse it for the bare-forward floor.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from analysis.errors import VariscopeError
from analysis.models.batching import Batch, make_batches

POOLINGS = ("mean", "mean_all", "first", "last")
#: "raw": hidden_states[ℓ] as the model returns them; "final-norm": every layer below the top through the
#: model's final norm, the representation a classifier on a pre-norm decoder truncated at ℓ pools (the top
#: layer's hidden state already has it)
REPRESENTATIONS = ("raw", "final-norm")
#: what a user may ask for: one of REPRESENTATIONS, or "auto", what the classifier truncated at ℓ pools (final-norm
#: on a pre-norm decoder, raw elsewhere), resolved per model by :func:`analysis.pipeline.concrete`
REPRESENTATION_CHOICES = ("auto", *REPRESENTATIONS)


def final_norm(model):
    """The final norm of a pre-norm decoder (``model.norm``: Llama, Gemma, Mistral, Qwen), else a one-line error."""
    norm = getattr(model, "norm", None)
    if norm is None:
        raise VariscopeError(
            f"representation 'final-norm' needs a pre-norm decoder with a final norm; {type(model).__name__} has none"
        )
    return norm


def through_final_norm(model, hidden_states: Sequence) -> tuple:
    """hidden_states (L+1 tensors (B, T, d)) with ``final_norm(model)`` applied to all but the last (already normed)."""
    norm = final_norm(model)
    return tuple(norm(h) for h in hidden_states[:-1]) + (hidden_states[-1],)


def pool(hidden_states, attention_mask, special_tokens_mask, pooling: str):
    """Pool a tuple of L+1 tensors (B, T, d) into one tensor (L+1, B, d) in float32.

    mean     : mean over tokens that are neither padding nor special (the paper);
               falls back to all non-padding tokens for a text with none.
    mean_all : mean over all non-padding tokens.
    first    : the first non-padding token (CLS/BOS).
    last     : the last non-padding token (for decoders), with padding on either side.
    """
    import torch

    if pooling not in POOLINGS:
        raise VariscopeError(f"unknown pooling '{pooling}'; use one of {', '.join(POOLINGS)}")
    with torch.autocast(hidden_states[0].device.type, enabled=False):  # float32 even inside an autocast forward
        return _pool32(hidden_states, attention_mask, special_tokens_mask, pooling)


def _pool32(hidden_states, attention_mask, special_tokens_mask, pooling: str):
    import torch

    am = attention_mask.to(torch.float32)
    if pooling in ("mean", "mean_all"):
        w = am
        if pooling == "mean":
            real = am * (1 - special_tokens_mask.to(torch.float32))
            none = real.sum(1, keepdim=True) == 0
            w = torch.where(none, am, real)
        w = w / w.sum(1, keepdim=True).clamp_min(1)
        return torch.stack([torch.einsum("btd,bt->bd", h.float(), w) for h in hidden_states])
    # the first / last real token, whether padding is on the right or on the left
    real = attention_mask.to(torch.long)
    rows = torch.arange(real.shape[0], device=real.device)
    if pooling == "first":
        first = real.argmax(1)
        return torch.stack([h[rows, first].float() for h in hidden_states])
    last = real.shape[1] - 1 - real.flip(1).argmax(1)
    return torch.stack([h[rows, last].float() for h in hidden_states])


def forward_batches(
    model,
    batches: Sequence[Batch],
    *,
    device: str,
    progress: Callable[[int, int], None] | None = None,
    on_output: Callable[[Batch, object], None] | None = None,
    hidden_states: bool = True,
) -> None:
    """Run the model on every batch under ``torch.inference_mode``.

    A model loaded with an ``autocast-…`` dtype (the CUDA default) runs under
    ``torch.autocast`` in that dtype; pooling is always done in float32.

    ``on_output(batch, outputs)`` receives each batch's model output. On CUDA
    out-of-memory, a batch is split in half and retried (down to one text).
    ``progress(done_texts, total_texts)`` is called after every batch.
    """
    import torch

    total = sum(len(b.index) for b in batches)
    done = 0
    queue = list(batches)[::-1]
    amp = getattr(model, "variscope_autocast", None)
    amp = torch.autocast(str(device).split(":")[0], dtype=getattr(torch, amp)) if amp else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        while queue:
            b = queue.pop()
            cuda = str(device).startswith("cuda")
            inputs = {
                k: (v.pin_memory() if cuda else v).to(device, non_blocking=cuda)
                for k, v in b.tensors.items()
                if k != "special_tokens_mask"
            }
            try:
                out = model(**inputs, output_hidden_states=hidden_states, return_dict=True)
                if on_output is not None:
                    on_output(b, out)
            except torch.cuda.OutOfMemoryError:
                del inputs
                torch.cuda.empty_cache()
                if len(b.index) == 1:
                    raise VariscopeError(
                        "out of GPU memory even with a batch of one text; lower --max-length or use --device cpu"
                    ) from None
                half = len(b.index) // 2
                warnings.warn(f"out of GPU memory with a batch of {len(b.index)}; retrying with {half}", stacklevel=2)
                queue.append(_slice(b, half, None))
                queue.append(_slice(b, 0, half))
                continue
            done += len(b.index)
            if progress is not None:
                progress(done, total)


def _slice(b: Batch, start, stop) -> Batch:
    return Batch(b.index[start:stop], {k: v[start:stop] for k, v in b.tensors.items()})


def extract_states(
    model,
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    *,
    pooling: str = "mean",
    max_length: int = 128,
    batch_size: int = 32,
    device: str | None = None,
    sort: bool = True,
    progress: Callable[[int, int], None] | None = None,
    representation: str = "raw",
) -> np.ndarray:
    """Pooled states of every layer.

    Parameters
    ----------
    texts : N strings; pairs : N second sentences or None.
    representation : one of :data:`REPRESENTATIONS`.

    Returns
    -------
    states : float32 array of shape (L+1, N, d); states[0] is the embedding
        output, states[l] the output of transformer layer l.
    """

    if pooling not in POOLINGS:
        raise VariscopeError(f"unknown pooling '{pooling}'; use one of {', '.join(POOLINGS)}")
    if len(texts) == 0:
        raise VariscopeError("no texts to encode")
    out: dict = {}

    def keep(index: np.ndarray, p: np.ndarray) -> None:
        if "states" not in out:
            out["states"] = np.empty((p.shape[0], len(texts), p.shape[2]), np.float32)
        out["states"][:, index] = p

    for_each_pooled(
        model,
        tokenizer,
        texts,
        pairs,
        keep,
        pooling=pooling,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        sort=sort,
        progress=progress,
        representation=representation,
    )
    return out["states"]


CHUNK_TEXTS = 8192  # texts tokenized and length-sorted together when they come from an iterator


def for_each_pooled(
    model,
    tokenizer,
    texts: Iterable[str],
    pairs: Iterable[str] | None,
    on_pooled: Callable[[np.ndarray, Any], None],
    *,
    pooling: str = "mean",
    max_length: int = 128,
    batch_size: int = 32,
    device: str | None = None,
    sort: bool = True,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
    total: int | None = None,
    representation: str = "raw",
    on_device: bool = False,
) -> None:
    """One forward pass over ``texts``; ``on_pooled(index, pooled)`` sees every batch.

    index : positions in ``texts`` (B,); pooled : float32 (L+1, B, d) on the CPU, or with
    ``on_device`` the torch tensor where the model ran (the streamed statistics sum it there).
    :func:`extract_states` stores them; the streaming path accumulates statistics.
    ``texts`` (and ``pairs``) may be iterators: they are then read ``chunk_size``
    (default :data:`CHUNK_TEXTS`) at a time, each chunk tokenized and batched on its
    own, so no more than one chunk of texts is held. A list with no ``chunk_size`` is
    one chunk (the same batches as before). ``total`` is the number of texts for
    ``progress`` when an iterator does not know it. ``representation`` "final-norm" pools every layer
    through the decoder's final norm (:func:`through_final_norm`).
    """
    if representation not in REPRESENTATIONS:
        raise VariscopeError(f"unknown representation '{representation}'; use one of {', '.join(REPRESENTATIONS)}")
    if representation == "final-norm":
        final_norm(model)  # a one-line error before any forward pass
    device = device or str(next(model.parameters()).device)
    if isinstance(texts, Sequence) and chunk_size is None:
        chunks: Iterable = [(texts, pairs)]
        total = len(texts)
    else:
        chunks = _chunks(texts, pairs, chunk_size or CHUNK_TEXTS)
    start = 0
    for ctexts, cpairs in chunks:
        batches = make_batches(tokenizer, ctexts, cpairs, max_length=max_length, batch_size=batch_size, sort=sort)

        def pooled(b: Batch, o, offset: int = start) -> None:
            hidden = o.hidden_states if representation == "raw" else through_final_norm(model, o.hidden_states)
            dev = hidden[0].device
            p = pool(hidden, b.tensors["attention_mask"].to(dev), b.tensors["special_tokens_mask"].to(dev), pooling)
            on_pooled(offset + np.asarray(b.index), p if on_device else p.cpu().numpy())

        def step(done: int, n: int, offset: int = start) -> None:
            if progress is not None:
                progress(offset + done, max(total or 0, offset + n))

        forward_batches(model, batches, device=device, progress=step, on_output=pooled)
        start += len(ctexts)
        del batches, ctexts, cpairs  # freed before the next chunk is read and batched: one chunk held, not two


def _chunks(texts: Iterable[str], pairs: Iterable[str] | None, size: int) -> Iterator[tuple[list, list | None]]:
    """Lists of at most ``size`` texts (and their pairs) from iterables."""
    if size < 1:
        raise VariscopeError(f"chunk size must be at least 1, got {size}")
    rows = iter(texts) if pairs is None else zip(texts, pairs, strict=True)
    while chunk := list(itertools.islice(rows, size)):
        if pairs is None:
            yield chunk, None
        else:
            yield [t for t, _ in chunk], [p for _, p in chunk]
