"""The trainable model: the encoder truncated to ℓ* blocks, a classification head, LoRA on chosen blocks."""

from __future__ import annotations

import copy

import torch
from torch import nn

from analysis.errors import VariscopeError
from analysis.models.hidden_states import POOLINGS, pool
from analysis.training.selection import Selection


class VariscopeClassifier(nn.Module):
    """Encoder truncated to ℓ* blocks + dropout→Linear(d,d)→tanh→dropout→Linear(d,C) on the pooled state."""

    def __init__(self, encoder, num_labels: int, pooling: str, dropout: float = 0.1, lowest_trained: int = 1):
        super().__init__()
        self.encoder = encoder
        # blocks below this one (1-based) and the embeddings are the frozen prefix: see train()
        self.lowest_trained = lowest_trained
        d = encoder.config.hidden_size
        self.pooling = pooling
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(d, d), nn.Tanh(), nn.Dropout(dropout), nn.Linear(d, num_labels)
        ).to(_output_device(encoder))  # beside the encoder's last block, not on the CPU, before any Trainer moves it
        self.num_labels = num_labels

    def train(self, mode: bool = True):
        """Train mode for the blocks from ``lowest_trained`` up and the head; the frozen prefix stays in eval.

        The prefix (embeddings, blocks below the lowest tuned one) never changes, so it runs
        without dropout: a run through it and a run from its cached output give the same model.
        The paper's code runs the frozen blocks' dropout; this departs from it (README).
        """
        from analysis.models.layers import layer_list

        super().train(mode)
        if mode and self.lowest_trained > 1:
            self.encoder.eval()
            for block in list(layer_list(self.encoder)[1])[self.lowest_trained - 1 :]:
                block.train(True)
        return self

    def forward(
        self, input_ids, attention_mask, special_tokens_mask=None, token_type_ids=None, labels=None, prefix_states=None
    ):
        """Logits (and the loss with ``labels``); ``prefix_states`` (B, T, d): the cached input of the lowest
        tuned block when the prefix cache is attached (:mod:`.prefix`)."""
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        inject = getattr(self, "_inject", None)
        if inject is not None:
            inject.states = prefix_states
        try:
            h = self.encoder(**kw, return_dict=True).last_hidden_state
        finally:
            if inject is not None:
                inject.states = None
        if special_tokens_mask is None:
            special_tokens_mask = torch.zeros_like(attention_mask)
        pooled = pool((h,), attention_mask, special_tokens_mask, self.pooling)[0].to(h.dtype)
        logits = self.head(pooled.to(self.head[1].weight.dtype))
        out = {"logits": logits}
        if labels is not None:
            out = {"loss": nn.functional.cross_entropy(logits.float(), labels), **out}
        return out


def _output_device(encoder) -> torch.device:
    """The device of the encoder's last parameter: where its output appears on one device."""
    params = list(encoder.parameters())
    return params[-1].device if params else torch.device("cpu")


def build_classifier(base_model, selection: Selection, num_labels: int, pooling: str = "mean") -> VariscopeClassifier:
    """A new trainable model for ``selection`` (the base model is not modified)."""
    from analysis.models.layers import layer_list, truncate_model

    if pooling not in POOLINGS:
        raise VariscopeError(f"unknown pooling '{pooling}'")
    selection.check(len(layer_list(base_model)[1]))
    enc = truncate_model(copy.deepcopy(base_model), selection.classifier_layer)
    enc.config.output_hidden_states = False
    for p in enc.parameters():
        p.requires_grad_(False)
    name, blocks = layer_list(enc)
    if selection.adapter == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=selection.lora_r,
            lora_alpha=2 * selection.lora_r,
            lora_dropout=0.05,
            target_modules=lora_targets(blocks[0]),
            layers_to_transform=[l - 1 for l in selection.tuned_layers],
            layers_pattern=name.rsplit(".", 1)[-1],
            bias="none",
        )
        enc = get_peft_model(enc, cfg)
    else:
        _unfreeze(enc, blocks, selection)
    return VariscopeClassifier(enc, num_labels, pooling, lowest_trained=lowest_trained(selection))


def lowest_trained(selection: Selection) -> int:
    """t: the lowest block (1-based) whose output depends on a trained weight; ℓ*+1 when only the head trains.

    The embeddings and blocks 1..t-1 are the frozen prefix (1 when the embeddings train).
    """
    if selection.tune_embeddings:
        return 1
    return min(selection.tuned_layers, default=selection.classifier_layer + 1)


def _unfreeze(enc, blocks, selection: Selection) -> None:
    for l in selection.tuned_layers:
        for p in blocks[l - 1].parameters():
            p.requires_grad_(True)
    if selection.tune_embeddings:
        for p in enc.get_input_embeddings().parameters():
            p.requires_grad_(True)
        emb = getattr(enc, "embeddings", None)
        if emb is not None:
            for p in emb.parameters():
                p.requires_grad_(True)


def freeze_unused(model: nn.Module, batch: dict) -> list[str]:
    """Freeze the trainable parameters that the loss does not reach; returns their names.

    One forward and backward pass of ``batch`` in eval mode (no dropout, so the
    random state is untouched; no optimizer step). A parameter without a gradient
    afterwards (e.g. a pooler or an embedding the classifier never uses) would
    never train, and under DDP with ``find_unused_parameters=False`` it would stop
    the second step ("Expected to have finished reduction ..."): frozen, every
    trainable parameter is used and DDP needs no search for unused ones.
    """
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        model(**batch)["loss"].backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        for n, p in model.named_parameters():
            if n in unused:
                p.requires_grad_(False)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return unused


def lora_targets(block) -> list[str]:
    """Names of the attention projections of ``block`` that LoRA adapts (query and value where split)."""
    names = {n.rsplit(".", 1)[-1] for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    for pair in (
        ["query", "value"],
        ["q_proj", "v_proj"],
        ["q", "v"],
        ["q_lin", "v_lin"],
        ["query_proj", "value_proj"],
    ):
        if set(pair) <= names:
            return pair
    for one in ("c_attn", "Wqkv", "qkv_proj", "query_key_value"):
        if one in names:
            return [one]
    raise VariscopeError(f"cannot find attention projections for LoRA in {type(block).__name__}")


def trainable_state(model: nn.Module) -> dict:
    """The parameters that train, on the CPU (what the exports save)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
