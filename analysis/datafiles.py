"""Labelled data files: CSV, TSV and JSONL bytes → rows of strings, with one-line errors."""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from pathlib import Path

from .errors import VariscopeError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def shown(text: object, limit: int = 80) -> str:
    """``text`` made safe for a one-line message: control characters escaped, long text cut."""
    s = str(text)
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _read_file_bytes(path: str) -> bytes:
    p = Path(path).expanduser()
    if not p.exists():
        raise VariscopeError(f"data file '{shown(path)}' does not exist")
    if p.is_dir():
        raise VariscopeError(f"data file '{shown(path)}' is a folder; give a CSV, TSV or JSONL file")
    if not p.is_file():
        raise VariscopeError(
            f"data file '{shown(path)}' is not a regular file (a pipe or device); give a CSV, TSV or JSONL file"
        )
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise VariscopeError(
            f"data file '{shown(path)}' is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB"
        )
    return p.read_bytes()


def decode_text(data: bytes, filename: str) -> tuple[str, list[str]]:
    """Text of a data file: UTF-8 (with or without BOM), UTF-16/32 by their BOM, else Windows-1252.

    Returns (text, warnings). NUL bytes in a file without a UTF-16/32 BOM mean binary data.
    """
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(codec), []
            except UnicodeDecodeError as e:
                raise VariscopeError(
                    f"file '{shown(filename)}' starts like {codec.upper()} but is not valid "
                    f"{codec.upper()} (byte {e.start}); save it as UTF-8"
                ) from None
    if b"\x00" in data[:65536]:
        raise VariscopeError(
            f"file '{shown(filename)}' is not a text file (it contains binary data); save it as UTF-8 CSV, TSV or JSONL"
        )
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as e:
        return data.decode("cp1252", errors="replace"), [
            f"file is not valid UTF-8 (byte {e.start}); read it as Windows-1252/Latin-1 — "
            f"save it as UTF-8 if some characters look wrong"
        ]


def parse_table(data: bytes, filename: str) -> tuple[list[dict], list[str]]:
    """Parse CSV, TSV or JSONL bytes into rows of strings; returns (rows, warnings)."""
    name = (filename or "").lower()
    if len(data) > MAX_UPLOAD_BYTES:
        raise VariscopeError(
            f"file '{shown(filename)}' is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB"
        )
    if not data.strip():
        raise VariscopeError(f"file '{shown(filename)}' is empty")
    text, warnings = decode_text(data, filename)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        rows = []
        stripped = text.strip()
        if name.endswith(".json") and stripped.startswith("["):
            try:
                rows = json.loads(stripped)
            except json.JSONDecodeError as e:
                raise VariscopeError(
                    f"file '{shown(filename)}' is not valid JSON: {e.msg} at line {e.lineno}"
                ) from None
        else:
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise VariscopeError(f"line {i} of '{shown(filename)}' is not valid JSON: {e.msg}") from None
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise VariscopeError(f"file '{shown(filename)}' must hold one JSON object per line")
        return [{k: ("" if v is None else v) for k, v in r.items()} for r in rows], warnings
    delim = "\t" if name.endswith((".tsv", ".tab")) else ","
    _allow_long_fields()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
        body = list(reader)
    except csv.Error as e:
        raise VariscopeError(
            f"file '{shown(filename)}' is not a valid {'TSV' if delim == chr(9) else 'CSV'} file: {e}"
        ) from None
    header = [h.strip() for h in header]
    if len(header) == 1:
        other = ";" if ";" in header[0] else ("\t" if "\t" in header[0] else ("," if "," in header[0] else None))
        hint = f" — is it {'tab' if other == chr(9) else repr(other)}-separated? Name it .tsv for tabs" if other else ""
        raise VariscopeError(
            f"file '{shown(filename)}' has a single column '{shown(header[0], 60)}'{hint}; "
            f"Variscope reads .csv as comma- and .tsv as tab-separated"
        )
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise VariscopeError(f"file '{shown(filename)}' has duplicated column name(s): {shown(', '.join(dups))}")
    # short rows leave their last columns out (read as empty), extra cells are dropped
    rows = [dict(zip(header, r, strict=False)) for r in body if any(c.strip() for c in r)]
    if not rows:
        raise VariscopeError(f"file '{shown(filename)}' has a header but no rows")
    return rows, warnings


def _allow_long_fields() -> None:
    """Lift the csv module's 128 KiB field limit: a long text is truncated by the tokenizer, not refused here."""
    if csv.field_size_limit() < MAX_UPLOAD_BYTES:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
