"""Labelled data files: CSV, TSV and JSONL bytes → rows of strings, with one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .errors import VariscopeError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def _read_file_bytes(path: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise VariscopeError(f"data file '{path}' does not exist")
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise VariscopeError(f"data file '{path}' is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    return p.read_bytes()


def parse_table(data: bytes, filename: str) -> tuple[list[dict], list[str]]:
    """Parse CSV, TSV or JSONL bytes into rows of strings; returns (rows, warnings)."""
    name = (filename or "").lower()
    if len(data) > MAX_UPLOAD_BYTES:
        raise VariscopeError(f"file '{filename}' is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data.strip():
        raise VariscopeError(f"file '{filename}' is empty")
    if b"\x00" in data[:65536]:
        raise VariscopeError(f"file '{filename}' is not a text file (it contains binary data)")
    warnings = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        text = data.decode("cp1252", errors="replace")
        warnings.append(f"file is not valid UTF-8 (byte {e.start}); read it as Windows-1252/Latin-1 — "
                        f"save it as UTF-8 if some characters look wrong")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        rows = []
        stripped = text.strip()
        if name.endswith(".json") and stripped.startswith("["):
            try:
                rows = json.loads(stripped)
            except json.JSONDecodeError as e:
                raise VariscopeError(f"file '{filename}' is not valid JSON: {e.msg} at line {e.lineno}") from None
        else:
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise VariscopeError(f"line {i} of '{filename}' is not valid JSON: {e.msg}") from None
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise VariscopeError(f"file '{filename}' must hold one JSON object per line")
        return [{k: ("" if v is None else v) for k, v in r.items()} for r in rows], warnings
    delim = "\t" if name.endswith((".tsv", ".tab")) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
        body = list(reader)
    except csv.Error as e:
        raise VariscopeError(f"file '{filename}' is not a valid {'TSV' if delim == chr(9) else 'CSV'} file: {e}") from None
    header = [h.strip() for h in header]
    if len(header) == 1:
        other = ";" if ";" in header[0] else ("\t" if "\t" in header[0] else ("," if "," in header[0] else None))
        hint = f" — is it {'tab' if other == chr(9) else repr(other)}-separated? Name it .tsv for tabs" if other else ""
        raise VariscopeError(f"file '{filename}' has a single column '{header[0][:60]}'{hint}; "
                             f"Variscope reads .csv as comma- and .tsv as tab-separated")
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise VariscopeError(f"file '{filename}' has duplicated column name(s): {', '.join(dups)}")
    # short rows leave their last columns out (read as empty), extra cells are dropped
    rows = [dict(zip(header, r, strict=False)) for r in body if any(c.strip() for c in r)]
    if not rows:
        raise VariscopeError(f"file '{filename}' has a header but no rows")
    return rows, warnings
