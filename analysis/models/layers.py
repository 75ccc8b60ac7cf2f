"""Layer surgery on a loaded transformer: find its blocks, keep the first ``k`` (for good or for a while).

:func:`layer_list` finds the ``nn.ModuleList`` of blocks in any supported architecture;
:func:`truncate_model` drops the blocks above ``k`` in place (training a truncated copy);
:func:`keep_layers` does so only inside a ``with`` block (the paper's one-model-per-layer
reference in the benchmarks). The config's layer count and per-layer attention pattern follow.
"""

from __future__ import annotations

import contextlib

from analysis.errors import VariscopeError


def layer_list(model):
    """The ``nn.ModuleList`` of transformer blocks (BERT, RoBERTa, MPNet, DeBERTa,
    DistilBERT, GPT-2, Llama-style...): the longest ModuleList whose length is the
    number of hidden layers."""
    import torch.nn as nn

    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    best = None
    for name, mod in model.named_modules():
        if (
            isinstance(mod, nn.ModuleList)
            and (n is None or len(mod) == n)
            and (best is None or name.count(".") < best[0].count("."))
        ):
            best = (name, mod)
    if best is None:
        raise VariscopeError(f"cannot find the transformer layers of a {type(model).__name__}")
    return best


def _replace_layers(model, layers, layer_types: list | None = None) -> list | None:
    """Put the ModuleList ``layers`` in place of the model's blocks; returns the old ``config.layer_types``.

    The config's layer count follows, so the model's forward (and
    ``output_hidden_states``) sees only the kept blocks. A per-layer attention
    pattern (``config.layer_types``, e.g. Gemma 3's sliding/full attention)
    is cut to the kept blocks, or set to ``layer_types`` when given.
    """
    name, _ = layer_list(model)
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], layers)
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(model.config, attr):
            setattr(model.config, attr, len(layers))
    old = getattr(model.config, "layer_types", None)
    if isinstance(old, list):
        model.config.layer_types = list(layer_types if layer_types is not None else old[: len(layers)])
    return old


def _first_blocks(model, keep: int):
    import torch.nn as nn

    _, layers = layer_list(model)
    if not 1 <= keep <= len(layers):
        raise VariscopeError(f"layer {keep} is out of range: this model has layers 1..{len(layers)}")
    return layers, nn.ModuleList(list(layers)[:keep])


def truncate_model(model, keep: int):
    """Drop every transformer block above ``keep`` (in place); returns the model.

    The dropped blocks are removed from the module tree, so they cost neither
    memory nor compute. ``config.num_hidden_layers`` is updated.
    """
    _, kept = _first_blocks(model, keep)
    _replace_layers(model, kept)
    return model


@contextlib.contextmanager
def keep_layers(model, keep: int):
    """Temporarily run ``model`` with only its first ``keep`` blocks (restored on exit).

    The paper's reference algorithm (one truncated model per layer) in the
    benchmarks uses this; training uses :func:`truncate_model` on a copy.
    """
    full, kept = _first_blocks(model, keep)
    types = _replace_layers(model, kept)
    try:
        yield model
    finally:
        _replace_layers(model, full, types)
