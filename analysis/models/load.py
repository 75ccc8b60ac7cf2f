"""Models: an offline registry, local folders and Hugging Face ids.

``resolve_model(spec)`` turns a user string into a :class:`ModelRef` (where the
weights are and a fingerprint for cache keys) without loading anything;
``load_model(ref, ...)`` loads the model and tokenizer. Every failure a user
can cause is a one-line :class:`VariscopeError`.
"""

from __future__ import annotations

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
from typing import Any

from analysis.errors import VariscopeError
from analysis.models.registry import REGISTRY, locate
from analysis.store.cache import default_cache_dir

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
    if is_local_path(spec):
        path = Path(spec).expanduser()
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


def is_local_path(spec: str) -> bool:
    """Whether :func:`resolve_model` reads ``spec`` (not a registry name) from this machine's disk:
    it exists there, or starts like a path (``.``, ``/``, ``~``, ``\\``)."""
    spec = (spec or "").strip()
    try:
        return spec.startswith((".", "/", "~", "\\")) or Path(spec).expanduser().exists()
    except (OSError, ValueError):  # e.g. an embedded NUL: never a name, so never read as one
        return True


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


DTYPES = ("auto", "float32", "bfloat16", "float16", "autocast-bfloat16")


AUTOCAST = "autocast-"


def cpu_bf16_supported() -> bool:
    """Whether torch reports native bfloat16 arithmetic on this CPU (AVX512-BF16 or AMX tiles).

    Without it bfloat16 autocast still runs, emulated and slower than float32: refused, not offered.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_dtype(dtype: str, device: str) -> str:
    """The precision to load and run a model with.

    'auto' → float32 on CPU/MPS; on CUDA, mixed precision: float32 weights
    with the forward pass under ``torch.autocast`` in bfloat16 (float16 on
    cards without bf16), returned as ``"autocast-bfloat16"``. An explicit
    'bfloat16'/'float16' casts the weights themselves (half the memory).
    'autocast-bfloat16' (opt-in, results then depend on the machine) keeps
    float32 weights under bfloat16 autocast, on a CPU or GPU that reports
    native bfloat16 (refused with one line elsewhere).
    """
    dtype = (dtype or "auto").lower()
    aliases = {
        "fp32": "float32",
        "bf16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
        "amp-bf16": AUTOCAST + "bfloat16",
    }
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
    if dtype == AUTOCAST + "bfloat16":
        import torch

        ok = cpu_bf16_supported() if device == "cpu" else device.startswith("cuda") and torch.cuda.is_bf16_supported()
        if not ok:
            where = "this CPU has neither AVX512-BF16 nor AMX" if device == "cpu" else f"not on {device}"
            raise VariscopeError(f"bfloat16 autocast needs native bfloat16 support, {where}; use float32")
    return dtype


def split_dtype(dtype: str) -> tuple[str, str | None]:
    """(weights dtype, autocast dtype or None) of a :func:`resolve_dtype` result."""
    if dtype.startswith(AUTOCAST):
        return "float32", dtype[len(AUTOCAST) :]
    return dtype, None


def _read_config(ref: ModelRef, trust_remote_code: bool = False) -> tuple[Any, dict[str, object]]:
    """(the model's transformers config, the keyword arguments every ``from_pretrained`` of it takes)."""
    from transformers import AutoConfig

    kwargs: dict[str, object] = {"trust_remote_code": bool(trust_remote_code)}
    if ref.source == "hub":
        kwargs["revision"] = ref.revision
        if not hub_reachable():
            kwargs["local_files_only"] = True
    try:
        return AutoConfig.from_pretrained(ref.location, **kwargs), kwargs
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


@functools.lru_cache(maxsize=32)
def has_final_norm(ref: ModelRef, trust_remote_code: bool = False) -> bool:
    """Whether ``ref``'s model is a pre-norm decoder with a final norm (``model.norm``: Llama, Gemma, Mistral,
    Qwen), the representation "final-norm" applies to. Read from the architecture built on the meta device
    from its config: no weights are loaded, so a cache lookup can ask before the model is."""
    import torch
    from transformers import AutoModel

    config, _ = _read_config(ref, trust_remote_code)
    try:
        with torch.device("meta"):
            model = AutoModel.from_config(config, trust_remote_code=bool(trust_remote_code))
    except Exception as e:
        raise VariscopeError(
            f"cannot tell whether '{ref.name}' has a final norm ({_first_line(e)}); "
            "choose --representation raw or final-norm"
        ) from None
    return getattr(model, "norm", None) is not None


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
    from transformers import AutoModel, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    config, kwargs = _read_config(ref, trust_remote_code)
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
