"""What a selection costs: trainable parameters and training FLOPs per example, next to full fine-tuning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analysis.training.selection import Selection, select

# 2: attention at heads × head_dim with a backward of twice its forward (1: the hidden size, backward = forward).
COST_MODEL = 2


def cost(base_model, selection: Selection, seq_len: float, num_labels: int) -> dict:
    """Parameters and training FLOPs per example for a selection, and the same for full fine-tuning.

    Per block (:func:`block_flops`): forward ≈ 2·P·T + 4·T²·w (weights, then QKᵀ and AV at the
    attention width w = heads × head_dim); backward through a block for activations ≈ 2·P·T + 8·T²·w
    (both operands of QKᵀ and AV are activations, so attention's backward is twice its forward);
    weight gradients ≈ 2·P·T for tuned blocks (2·P_lora·T for LoRA). Gradients flow from the
    head down to the lowest tuned block only.
    """
    from analysis.models.layers import layer_list

    _, blocks = layer_list(base_model)
    d = base_model.config.hidden_size
    w = attention_width(base_model.config)
    T = float(seq_len)
    P = [sum(p.numel() for p in b.parameters()) for b in blocks]
    fwd = [block_flops(p, T, w)[0] for p in P]
    bwd = [block_flops(p, T, w)[1] for p in P]
    head_p = d * d + d + d * num_labels + num_labels
    emb_p = sum(p.numel() for p in base_model.get_input_embeddings().parameters())
    total_base = sum(p.numel() for p in base_model.parameters())

    def flops(sel: Selection) -> float:
        keep = sel.classifier_layer
        lo = 1 if sel.tune_embeddings else (min(sel.tuned_layers) if sel.tuned_layers else keep + 1)
        f = sum(fwd[:keep]) + 2 * head_p
        f += sum(bwd[lo - 1 : keep])  # activation gradients
        if sel.adapter == "lora":
            f += sum(2 * _lora_params(d, sel.lora_r) * T for _ in sel.tuned_layers)
        else:
            f += sum(2 * P[l - 1] * T for l in sel.tuned_layers)
        f += 4 * head_p
        return f

    def trainable(sel: Selection) -> int:
        if sel.adapter == "lora":
            return head_p + len(sel.tuned_layers) * _lora_params(d, sel.lora_r)
        return head_p + sum(P[l - 1] for l in sel.tuned_layers) + (emb_p if sel.tune_embeddings else 0)

    full = select("full", len(blocks), 1)
    kept_params = total_base - sum(P[selection.classifier_layer :]) + head_p
    return {
        "trainable_params": trainable(selection),
        "total_params": kept_params,
        "full_trainable_params": trainable(full),
        "full_total_params": total_base + head_p,
        "flops_per_example": flops(selection),
        "full_flops_per_example": flops(full),
        "flops_vs_full": flops(selection) / flops(full),
        "params_vs_full": trainable(selection) / trainable(full),
        "seq_len": T,
        "layers_kept": selection.classifier_layer,
        "block_forward_flops": fwd,  # per example, blocks 1..L (the estimator's evaluations and one-off passes)
        "head_forward_flops": 2.0 * head_p,
    }


def attention_width(config) -> int:
    """The width of QKᵀ and AV: heads × head_dim (gemma3-270m: 4 × 256 = 1024, not its hidden size 640).

    Models without a ``head_dim`` split the hidden size over the heads (width = hidden size).
    """
    heads, head_dim = getattr(config, "num_attention_heads", None), getattr(config, "head_dim", None)
    if isinstance(heads, int) and isinstance(head_dim, int) and heads > 0 and head_dim > 0:
        return heads * head_dim
    return int(config.hidden_size)


def block_flops(params: int, seq_len: float, width: int) -> tuple[float, float]:
    """(forward, backward for activations) FLOPs per example of one block of ``params`` weights.

    forward 2·P·T + 4·T²·w; backward 2·P·T + 8·T²·w (attention's two matmuls need a gradient
    for each of their two activation operands). Weight gradients are counted by the caller.
    """
    T = float(seq_len)
    return 2 * params * T + 4 * T * T * width, 2 * params * T + 8 * T * T * width


def block_forward_flops(model, seq_len: float) -> list[float]:
    """Forward FLOPs per example of each block of ``model`` at ``seq_len`` tokens (:func:`block_flops`), shape (L,)."""
    from analysis.models.layers import layer_list

    _, blocks = layer_list(model)
    w = attention_width(model.config)
    return [block_flops(sum(p.numel() for p in b.parameters()), seq_len, w)[0] for b in blocks]


def run_flops(
    base_model,
    selection: Selection,
    seq_len: float,
    num_labels: int,
    *,
    examples: int,
    texts: int,
    evaluated: int,
    cached: bool,
) -> float:
    """FLOPs of a whole run: ``examples`` trained (steps × batch), ``evaluated`` held-out predictions (evaluations ×
    held-out texts), and with the frozen-prefix cache (``cached``) its pass over ``texts`` (training + held-out).

    Without the cache each trained example costs :func:`cost`'s ``flops_per_example`` and each prediction the
    forward pass of blocks 1..ℓ*; with it, the forward pass of blocks 1..t-1 (t the lowest tuned block) leaves
    both and runs once per text instead.
    """
    from analysis.training.model import lowest_trained

    fwd = block_forward_flops(base_model, seq_len)
    keep, t = selection.classifier_layer, lowest_trained(selection)
    prefix = sum(fwd[: t - 1]) if cached else 0.0
    per_example = cost(base_model, selection, seq_len, num_labels)["flops_per_example"] - prefix
    return examples * per_example + evaluated * (sum(fwd[:keep]) - prefix) + texts * prefix


def selection_cost(model, tokenizer, texts, selection: Selection, num_labels: int, max_length: int) -> dict:
    """:func:`cost` with the mean token length of ``texts`` (at most 2000 of them)."""
    from analysis.models.batching import tokenize

    enc = tokenize(tokenizer, list(texts)[:2000], None, max_length)
    return cost(model, selection, float(np.mean([len(x) for x in enc["input_ids"]])), num_labels)


def cost_preview(cfg, selection: Selection, texts, num_labels: int, *, loader: Callable | None = None) -> dict:
    """The cost of ``selection`` for the model and length of ``cfg`` (an AnalysisConfig), loading the model.

    ``loader(ref, device, dtype, trust_remote_code)`` loads the model (the app passes its cached loader);
    the model is loaded the way :func:`~analysis.training.train` loads it.
    """
    from analysis.pipeline import cached_model, resolve_target

    target = resolve_target(cfg)
    base, tok = (loader or cached_model)(
        target.ref, target.device, load_dtype(target.device, target.dtype), cfg.trust_remote_code
    )
    return selection_cost(base, tok, texts, selection, num_labels, cfg.max_length)


def load_dtype(device: str, dtype: str) -> str:
    """The dtype a training run loads its model in: the resolved dtype, but on the CPU float32 weights (under
    bfloat16 autocast when "autocast-bfloat16" was asked for: weights cast to bfloat16 do not train well)."""
    from analysis.models.load import AUTOCAST

    return "float32" if device == "cpu" and not dtype.startswith(AUTOCAST) else dtype


def _lora_params(d: int, r: int) -> int:
    return 2 * (2 * d * r)  # query and value: A (d×r) + B (r×d) each
