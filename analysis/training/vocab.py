"""A task-sized vocabulary: when the embeddings train, only the rows of the token ids the task's texts use train.

Full fine-tuning of a model with a large vocabulary (gemma3-270m: 262,144 rows × 640) pays for
the whole embedding matrix at every step (its gradient, AdamW's two moments and update),
although a task's texts use a few thousand of its rows. :func:`compact` puts a
:class:`CompactEmbedding` in place of the input embedding: the rows of the ids that occur in
the training and held-out texts (and the pad id) as one trainable ``(rows, d)`` matrix, the ids
remapped inside its forward, so the tokens, masks and position ids are those of the full
model. :func:`restore` scatters the trained rows back into the full matrix (in place: a tied
output embedding stays tied) and puts the original module back.

This is exact for everything the task can observe: the other rows never reach the loss, so
their gradients and AdamW moments are zero with the full matrix too; only the weight decay
that the full matrix would apply to them is not applied (they are not observable by the run).
"""

from __future__ import annotations

import numpy as np

# Embedding classes whose forward is a row lookup (times ``embed_scale`` for the scaled ones)
_SCALED = ("Gemma3TextScaledWordEmbedding", "GemmaScaledWordEmbedding", "Gemma2ScaledWordEmbedding")


def task_ids(*encs: dict) -> np.ndarray:
    """Sorted unique token ids of the tokenized texts in ``encs`` (with their ``_pad_id``), int64."""
    parts = [np.asarray(row, dtype=np.int64) for enc in encs for row in enc["input_ids"]]
    parts += [np.asarray([enc["_pad_id"]], dtype=np.int64) for enc in encs if enc.get("_pad_id") is not None]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def unsupported(full) -> str | None:
    """None when ``full`` (an input embedding) is a plain row lookup this module reproduces, else why not."""
    from torch import nn

    name = type(full).__name__
    if not isinstance(full, nn.Embedding) or (type(full) is not nn.Embedding and name not in _SCALED):
        return f"task-sized vocabulary off: {name} is not a plain embedding lookup; the whole matrix trains"
    if full.max_norm is not None or full.sparse:
        return "task-sized vocabulary off: the embedding renormalises rows or has sparse gradients"
    return None


def _module():
    import torch
    from torch import nn

    class CompactEmbedding(nn.Module):
        """The rows ``ids`` of ``full`` as a trainable ``weight`` (rows, d); ``full`` stays, frozen, for restore.

        forward(input_ids (B, T)) -> (B, T, d): ``full(input_ids)`` with the rows read from ``weight``
        (times ``full.embed_scale`` for Gemma's scaled embedding). Ids outside ``ids`` raise.
        """

        def __init__(self, full: nn.Embedding, ids: np.ndarray):
            super().__init__()
            self.full = full
            idx = torch.as_tensor(ids, dtype=torch.long, device=full.weight.device)
            self.ids: torch.Tensor
            self.remap: torch.Tensor
            self.register_buffer("ids", idx, persistent=False)
            remap = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=full.weight.device)
            remap[idx] = torch.arange(len(idx), device=full.weight.device)
            self.register_buffer("remap", remap, persistent=False)
            self.weight = nn.Parameter(full.weight.detach()[idx].clone())
            pad = full.padding_idx
            # the pad row gets no gradient, as in the full matrix
            self.padding_idx = int(remap[pad]) if pad is not None and int(remap[pad]) >= 0 else None
            full.weight.requires_grad_(False)

        def forward(self, input_ids):
            local = self.remap[input_ids]
            if bool((local < 0).any()):
                raise IndexError("a token id outside the task's vocabulary reached the task-sized embedding")
            out = nn.functional.embedding(local, self.weight, self.padding_idx)
            scale = getattr(self.full, "embed_scale", None)
            return out if scale is None else out * scale.to(self.weight.dtype)

        def scatter(self) -> None:
            """Write the trained rows into the full matrix (in place) and let it train again."""
            with torch.no_grad():
                self.full.weight[self.ids] = self.weight.detach().to(self.full.weight.dtype)
            self.full.weight.requires_grad_(True)

    return CompactEmbedding


def compact(model, plan, *, on: bool = True, progress=None) -> dict:
    """Put a task-sized embedding into ``model.encoder`` when its input embedding trains; the run JSON's record.

    Returns ``{"task_sized": True, "rows": n, "of": V}`` or ``{"task_sized": False, "why": ...}``.
    """
    enc = model.encoder
    full = enc.get_input_embeddings()
    if not getattr(getattr(full, "weight", None), "requires_grad", False):
        return {"task_sized": False, "why": "the embeddings do not train"}
    if not on:
        return {"task_sized": False, "why": "turned off", "rows": int(full.num_embeddings)}
    why = unsupported(full)
    if why:
        if progress:
            progress(why)
        return {"task_sized": False, "why": why, "rows": int(full.weight.shape[0])}
    ids = task_ids(plan.enc_tr, plan.enc_ev)
    enc.set_input_embeddings(_module()(full, ids))
    if progress:
        progress(f"task-sized vocabulary: {len(ids):,} of {full.num_embeddings:,} embedding rows train")
    return {"task_sized": True, "rows": len(ids), "of": int(full.num_embeddings)}


def restore(model) -> None:
    """Scatter the trained rows back into the full matrix and put it back in place (no-op without compact)."""
    enc = model.encoder
    emb = enc.get_input_embeddings()
    if type(emb).__name__ != "CompactEmbedding":
        return
    emb.scatter()
    enc.set_input_embeddings(emb.full)
