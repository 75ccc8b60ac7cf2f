"""Models: an offline registry, local folders and Hugging Face ids.

``resolve_model(spec)`` turns a user string into a :class:`ModelRef` (where the
weights are and a fingerprint for cache keys) without loading anything;
``load_model(ref, ...)`` loads the model and tokenizer. Every failure a user
can cause is a one-line :class:`VariscopeError`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import VariscopeError
from analysis.models.registry import REGISTRY, locate

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
    "merges.txt",
    "tokenizer_config.json",
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
DECODER_TYPES = {
    "gpt2",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "phi",
    "phi3",
    "gemma",
    "gemma2",
    "opt",
    "bloom",
    "falcon",
    "olmo",
    "smollm",
}


@dataclass(frozen=True)
class ModelRef:
    """Where a model lives and what identifies its weights.

    name : what the user typed (registry name, folder or hub id).
    source : "registry", "local" or "hub".
    location : folder path or hub id passed to ``from_pretrained``.
    fingerprint : changes whenever the weights change (cache keys use it).
    """

    name: str
    source: str
    location: str
    fingerprint: str
    revision: str | None = None
    info: dict = field(default_factory=dict, compare=False, hash=False)


def default_cache_dir() -> Path:
    return Path(os.environ.get("VARISCOPE_CACHE") or Path(__file__).resolve().parents[2] / "cache")


def resolve_model(spec: str, *, revision: str | None = None, cache_dir=None, progress=None) -> ModelRef:
    """Turn a registry name, a folder or a hub id into a :class:`ModelRef`.

    ``progress(stage, done, total)`` sees the one-time assembly or conversion of an offline GGUF model.
    """
    spec = (spec or "").strip()
    if not spec:
        raise VariscopeError(
            "no model given; use an offline name (minilm, mpnet, gemma3-270m), a folder or a Hugging Face id"
        )
    if spec in REGISTRY:
        folder, fingerprint, info = locate(spec, Path(cache_dir) if cache_dir else default_cache_dir(), progress)
        return ModelRef(spec, "registry", folder, fingerprint, info=info)
    from analysis.store.atomic import check_path_name

    check_path_name(spec, f"model '{spec[:60]}'")
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.is_dir():
            raise VariscopeError(f"model folder '{spec}' does not exist or is not a folder")
        if not (path / "config.json").is_file():
            raise VariscopeError(f"model folder '{spec}' has no config.json; it is not a Hugging Face model folder")
        return ModelRef(spec, "local", str(path.resolve()), _folder_fingerprint(path))
    if HUB_ID.match(spec) and ".." not in spec:
        rev = revision or "main"
        return ModelRef(spec, "hub", spec, f"hub:{spec}@{rev}", revision=rev)
    known = ", ".join(REGISTRY)
    raise VariscopeError(
        f"unknown model '{spec}': not an offline model ({known}), an existing folder or a Hugging Face id"
    )


MODEL_FILES = {".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".gguf"}
VOCAB_FILES = {"vocab.txt", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"}


def _folder_fingerprint(path: Path) -> str:
    """Hash of config.json and of every byte of the weights and tokenizer files (digests remembered per file)."""
    from analysis.store.filehash import MEMO_NAME, file_digest

    memo = default_cache_dir() / MEMO_NAME
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        tok = f.name in VOCAB_FILES or f.name.startswith("tokenizer") or f.suffix == ".model"
        if (f.suffix in MODEL_FILES or tok) and f.is_file():
            h.update(f"{f.name}:{file_digest(f, memo)}".encode())
    return "local:" + h.hexdigest()[:24]


def describe(ref: ModelRef) -> dict:
    """Layers, hidden size and parameter count from files, without loading weights."""
    if ref.info:
        return dict(ref.info)
    if ref.source == "hub":
        return {"layers": None, "hidden": None, "params": None, "title": ref.name}
    folder = Path(ref.location)
    cfg = json.loads((folder / "config.json").read_text())
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers")
    hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    params = 0
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                c = 1
                for s in v["shape"]:
                    c *= s
                params += c
    return {"layers": layers, "hidden": hidden, "params": params or None, "title": ref.name}


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 2.0) -> bool:
    """True unless the Hugging Face hub is known to be unreachable (one quick probe).

    The probe (name lookup and TCP connect) runs in a daemon thread joined with
    ``timeout``, so a hanging DNS lookup cannot stall the caller and no
    process-wide socket setting is touched.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    ok = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection(("huggingface.co", 443), timeout=timeout):
                ok.set()
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True, name="variscope-hub-probe")
    t.start()
    t.join(timeout)
    return ok.is_set()


def resolve_device(device: str = "auto") -> str:
    """'auto' → cuda, then mps, then cpu; anything else is checked and returned."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VariscopeError(f"device '{device}' asked for, but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VariscopeError("device 'mps' asked for, but Apple MPS is not available; use --device cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise VariscopeError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps")
    return device


DTYPES = ("auto", "float32", "bfloat16", "float16")


AUTOCAST = "autocast-"


def resolve_dtype(dtype: str, device: str) -> str:
    """The precision to load and run a model with.

    'auto' → float32 on CPU/MPS; on CUDA, mixed precision: float32 weights
    with the forward pass under ``torch.autocast`` in bfloat16 (float16 on
    cards without bf16), returned as ``"autocast-bfloat16"``. An explicit
    'bfloat16'/'float16' casts the weights themselves (half the memory).
    """
    dtype = (dtype or "auto").lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    dtype = aliases.get(dtype, dtype)
    if dtype not in DTYPES:
        raise VariscopeError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            import torch

            return AUTOCAST + ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
        return "float32"
    if device == "cpu" and dtype == "float16":
        raise VariscopeError("float16 is not supported on the CPU; use float32 or bfloat16")
    return dtype


def split_dtype(dtype: str) -> tuple[str, str | None]:
    """(weights dtype, autocast dtype or None) of a :func:`resolve_dtype` result."""
    if dtype.startswith(AUTOCAST):
        return "float32", dtype[len(AUTOCAST) :]
    return dtype, None


def load_model(
    ref: ModelRef,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    device_map: str | None = None,
):
    """Load ``(model, tokenizer)`` for hidden-state extraction.

    The model is in eval mode on ``device`` (or spread by ``device_map="auto"``
    through accelerate). ``dtype`` is a :func:`resolve_dtype` result; for
    ``"autocast-…"`` the weights stay float32 and ``model.variscope_autocast``
    names the dtype the forward passes autocast to. Decoder tokenizers without a pad token get their EOS
    token as pad, padding on the right.
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    kwargs: dict[str, object] = {"trust_remote_code": bool(trust_remote_code)}
    if ref.source == "hub":
        kwargs["revision"] = ref.revision
        if not hub_reachable():
            kwargs["local_files_only"] = True
    try:
        config = AutoConfig.from_pretrained(ref.location, **kwargs)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise VariscopeError(
                f"model '{ref.name}' needs its own code from the hub; "
                f"opt in with --trust-remote-code only if you trust its authors"
            ) from None
        raise VariscopeError(
            f"model '{ref.name}' has a config that transformers cannot read: {_first_line(e)}"
        ) from None
    except OSError as e:
        raise _load_error(ref, e) from None
    if (
        getattr(config, "is_encoder_decoder", False)
        or getattr(config, "vision_config", None) is not None
        or getattr(config, "model_type", "") in {"vit", "clip", "whisper", "wav2vec2", "resnet"}
    ):
        raise VariscopeError(
            f"model '{ref.name}' ({config.model_type}) is not a text encoder or decoder; "
            f"Variscope supports BERT-, RoBERTa-, MPNet-, DeBERTa-style encoders and GPT-style decoders"
        )
    if ref.source != "hub" and not any((Path(ref.location) / f).is_file() for f in TOKENIZER_FILES):
        raise VariscopeError(
            f"model folder '{ref.name}' has no tokenizer (none of {', '.join(TOKENIZER_FILES[:4])}, …); "
            f"save the tokenizer with tokenizer.save_pretrained(folder)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.location, **kwargs)
    except (OSError, ValueError, TypeError) as e:
        if ref.source != "hub":
            raise VariscopeError(f"model folder '{ref.name}' has no usable tokenizer ({_first_line(e)})") from None
        raise _load_error(ref, e) from None
    if len(tokenizer) < 100:  # transformers builds an empty tokenizer when files are missing
        raise VariscopeError(f"model '{ref.name}' has no usable tokenizer (its vocabulary has {len(tokenizer)} tokens)")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise VariscopeError(f"tokenizer of '{ref.name}' has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    weights, autocast = split_dtype(dtype)
    torch_dtype = getattr(torch, weights)
    try:
        if device_map:
            model = AutoModel.from_pretrained(ref.location, dtype=torch_dtype, device_map=device_map, **kwargs)
        else:
            model = AutoModel.from_pretrained(ref.location, dtype=torch_dtype, **kwargs).to(device)
    except OSError as e:
        raise _load_error(ref, e) from None
    model.eval()
    model.config.output_hidden_states = True
    model.variscope_autocast = autocast  # read by hidden_states.forward_batches
    return model, tokenizer


def is_decoder(model) -> bool:
    cfg = model.config
    return bool(getattr(cfg, "is_decoder", False)) or cfg.model_type in DECODER_TYPES


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def _load_error(ref: ModelRef, e: Exception) -> VariscopeError:
    if ref.source == "hub":
        if not hub_reachable():
            return VariscopeError(
                f"model '{ref.name}' is not in the local Hugging Face cache and the hub is "
                f"unreachable (offline); download it once online, pass a local folder, "
                f"or use an offline model (minilm, mpnet)"
            )
        return VariscopeError(f"could not load model '{ref.name}' from the Hugging Face hub: {_first_line(e)}")
    return VariscopeError(f"could not load model '{ref.name}': {_first_line(e)}")


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
