"""Texts, a tokenizer and randomly initialised models made on the spot, for a machine with nothing but the code.

The GPU record (:mod:`analysis.bench.gpu_record`) runs where no data wheel, model file
or network is at hand. Speed does not depend on what the words mean or on the weights,
only on the number of tokens per text and the model's shape, so:

- texts: pseudo-words drawn with Zipf frequencies, about 24 words a text (gamma-distributed,
  3 to 60), which a word-level tokenizer turns into about 28 tokens with its special tokens:
  the length of the Rotten Tomatoes snippets the CPU benchmarks use (27 BERT tokens on average);
  two balanced classes, each with its own slightly preferred words, so ν is finite and varies;
- a WordPiece tokenizer whose vocabulary is those words (saved like any BERT tokenizer);
- a BERT-like encoder and a decoder shaped like Gemma 3 270M, built from their configs.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PUNCTUATION = (",", ".")
VOCAB_WORDS = 6000
MEAN_WORDS, MIN_WORDS, MAX_WORDS = 24, 3, 60
#: Gemma 3 270M's shape (its config.json), less what only generation reads.
GEMMA3_270M = {
    "vocab_size": 262144,
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_hidden_layers": 18,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 512,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
}
#: The same architecture at a size a test can build on a CPU in a second.
GEMMA3_TINY = {
    **GEMMA3_270M,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "head_dim": 16,
    "query_pre_attn_scalar": 16,
}


def words(n: int = VOCAB_WORDS, seed: int = 0) -> list[str]:
    """``n`` distinct pronounceable pseudo-words (2 to 4 syllables), in a fixed order."""
    rng = np.random.default_rng(seed)
    onsets, vowels = list("bdfgklmnprstvz") + ["ch", "st", "tr"], list("aeiou")
    out: dict[str, None] = {}
    while len(out) < n:
        k = int(rng.integers(2, 5))
        out["".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(k))] = None
    return list(out)


def texts(n: int, vocab: list[str], seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` texts and their labels (shape (n,), 0 or 1, balanced); see the module docstring."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf
    p /= p.sum()
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    lengths = np.clip(rng.gamma(4.5, MEAN_WORDS / 4.5, n).round().astype(int), MIN_WORDS, MAX_WORDS)
    marked = [vocab[200:260], vocab[260:320]]  # each class's preferred words, drawn one time in ten
    drawn = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
    swap = rng.random(len(drawn)) < 0.1
    out = []
    start = 0
    for y, k in zip(labels, lengths, strict=True):
        ws = [vocab[i] for i in drawn[start : start + k]]
        for i in np.flatnonzero(swap[start : start + k]):
            ws[i] = marked[y][int(rng.integers(len(marked[y])))]
        start += k
        if k > 8:
            ws[int(rng.integers(3, k - 3))] += ","
        out.append(" ".join(ws) + ".")
    return out, labels


def write_texts(path: str, n: int, vocab: list[str], seed: int = 0) -> str:
    """A CSV (text,label) of ``n`` synthetic texts, labels named "a" and "b"; returns ``path``."""
    xs, ys = texts(n, vocab, seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((x, "ab"[int(y)]) for x, y in zip(xs, ys, strict=True))
    return path


def tokenizer(folder: str, vocab: list[str]):
    """A lower-casing WordPiece (BERT-style) tokenizer of ``vocab`` plus punctuation, saved into ``folder``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {w: i for i, w in enumerate([*SPECIALS, *PUNCTUATION, *vocab])}
    tk = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    return tok


def gemma3_decoder(folder: str, tok, shape: dict, seed: int = 0) -> str:
    """A randomly initialised Gemma-3 text model of ``shape`` (e.g. :data:`GEMMA3_270M`) and ``tok`` in ``folder``.

    Raises ImportError where this transformers has no Gemma 3 (before 4.50).
    """
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    torch.manual_seed(seed)
    ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.cls_token_id, "eos_token_id": tok.sep_token_id}
    Gemma3TextModel(Gemma3TextConfig(**shape, **ids)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
