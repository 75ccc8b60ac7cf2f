"""Labelled data files: CSV, TSV and JSONL bytes → rows of strings, with one-line errors."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from analysis.errors import VariscopeError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def shown(text: object, limit: int = 80) -> str:
    """``text`` made safe for a one-line message: control characters escaped, long text cut."""
    s = str(text)
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def check_data_path(path: str) -> Path:
    """The data file ``path`` as a Path; one-line errors when it is missing, a folder or not a regular file."""
    from analysis.store.atomic import check_path_name

    check_path_name(path, f"data file '{shown(path, 60)}'")
    p = Path(path).expanduser()
    if not p.exists():
        raise VariscopeError(f"data file '{shown(path)}' does not exist")
    if p.is_dir():
        raise VariscopeError(f"data file '{shown(path)}' is a folder; give a CSV, TSV or JSONL file")
    if not p.is_file():
        raise VariscopeError(
            f"data file '{shown(path)}' is not a regular file (a pipe or device); give a CSV, TSV or JSONL file"
        )
    return p


def read_file_bytes(path: str) -> bytes:
    p = check_data_path(path)
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


def _is_json(name: str) -> bool:
    return name.lower().endswith((".jsonl", ".ndjson", ".json"))


def _delimiter(name: str) -> str:
    return "\t" if name.lower().endswith((".tsv", ".tab")) else ","


def split_lines(chunks) -> Iterator[str]:
    """The lines of text read in ``chunks``, split at ``\\n`` only.

    JSON lines end at ``\\n`` (or ``\\r\\n``, whose ``\\r`` is JSON whitespace); ``str.splitlines``
    would also split at U+2028, U+0085 or a lone ``\\r``, which valid JSON holds raw inside strings.
    """
    rest: list[str] = []
    for chunk in chunks:
        *done, tail = chunk.split("\n")
        if done:
            yield "".join([*rest, done[0]])
            yield from done[1:]
            rest = []
        rest.append(tail)
    if any(rest):
        yield "".join(rest)


def _json_lines(lines, filename: str):
    """Rows of JSON lines (from :func:`split_lines`, numbered from 1); non-objects refused at the end."""
    objects = True
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise VariscopeError(f"line {i} of '{shown(filename)}' is not valid JSON: {e.msg}") from None
            if isinstance(r, dict):
                yield _json_row(r)
            else:
                objects = False
    if not objects:
        raise VariscopeError(f"file '{shown(filename)}' must hold one JSON object per line")


def _json_row(r: dict) -> dict:
    return {k: ("" if v is None else v) for k, v in r.items()}


def _csv_rows(reader, filename: str, delim: str):
    """Rows of a csv.reader as dicts by the checked header; blank rows skipped."""
    kind = "TSV" if delim == "\t" else "CSV"
    try:
        header = next(reader)
    except StopIteration:
        raise VariscopeError(f"file '{shown(filename)}' is empty") from None
    except csv.Error as e:
        raise VariscopeError(f"file '{shown(filename)}' is not a valid {kind} file: {e}") from None
    header = _check_header([h.strip() for h in header], filename)
    while True:
        try:
            r = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise VariscopeError(f"file '{shown(filename)}' is not a valid {kind} file: {e}") from None
        if any(c.strip() for c in r):  # a short row's last columns read as empty (every row has the header's keys)
            yield dict(zip(header, r + [""] * (len(header) - len(r)), strict=False))  # extra cells dropped


def _check_header(header: list[str], filename: str) -> list[str]:
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
    return header


def _rows_of_text(text: str, filename: str):
    """Every row of a decoded table (a JSON array, JSON lines or CSV/TSV); the rules of :func:`parse_table`."""
    if _is_json(filename):
        stripped = text.strip()
        if filename.lower().endswith(".json") and stripped.startswith("["):
            try:
                rows = json.loads(stripped)
            except json.JSONDecodeError as e:
                raise VariscopeError(
                    f"file '{shown(filename)}' is not valid JSON: {e.msg} at line {e.lineno}"
                ) from None
            if not all(isinstance(r, dict) for r in rows):
                raise VariscopeError(f"file '{shown(filename)}' must hold one JSON object per line")
            return [_json_row(r) for r in rows]
        return _json_lines(split_lines([text]), filename)
    _allow_long_fields()
    delim = _delimiter(filename)
    return _csv_rows(csv.reader(io.StringIO(text, newline=""), delimiter=delim), filename, delim)


def _no_rows(filename: str) -> VariscopeError:
    if _is_json(filename):
        return VariscopeError(f"file '{shown(filename)}' must hold one JSON object per line")
    return VariscopeError(f"file '{shown(filename)}' has a header but no rows")


def parse_table(data: bytes, filename: str) -> tuple[list[dict], list[str]]:
    """Parse CSV, TSV or JSONL bytes into rows of strings; returns (rows, warnings)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise VariscopeError(
            f"file '{shown(filename)}' is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB"
        )
    if not data.strip():
        raise VariscopeError(f"file '{shown(filename)}' is empty")
    text, warnings = decode_text(data, filename)
    rows = list(_rows_of_text(text, filename or ""))
    if not rows:
        raise _no_rows(filename)
    return rows, warnings


def _allow_long_fields() -> None:
    """Lift the csv module's 128 KiB field limit: a long text is truncated by the tokenizer, not refused here."""
    if csv.field_size_limit() < MAX_UPLOAD_BYTES:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


_CHUNK = 1 << 20


class TableFile:
    """A data file read row by row, never whole: the rules of :func:`parse_table` without its size limit.

    The constructor reads the bytes once (in 1 MiB chunks) to choose the encoding as
    :func:`decode_text` does (UTF-16/32 by BOM, else UTF-8, else Windows-1252 with a warning);
    :meth:`rows` then parses the file lazily, as often as it is called. A ``.json`` array is one
    JSON document and is read whole.
    """

    def __init__(self, path: str):
        self.path, self.name = check_data_path(path), str(path)
        self.json = _is_json(self.name)  # JSON rows hold their own keys; CSV rows all hold the header's
        self.codec, self.errors, self.warnings = self._scan()

    def _scan(self) -> tuple[str, str, list[str]]:
        with open(self.path, "rb") as f:
            head = f.read(65536)
            bom = next((c for b, c in _BOMS if head.startswith(b)), None)
            if bom is None and b"\x00" in head:
                raise VariscopeError(
                    f"file '{shown(self.name)}' is not a text file (it contains binary data); "
                    "save it as UTF-8 CSV, TSV or JSONL"
                )
            codec = bom or "utf-8-sig"
            dec, pos, blank = codecs.getincrementaldecoder(codec)(), 0, True
            f.seek(0)
            for chunk in itertools.chain(iter(lambda: f.read(_CHUNK), b""), [b""]):  # b"": the end
                blank = blank and not chunk.strip()
                held = len(dec.getstate()[0])  # bytes of a split character, decoded with this chunk
                try:
                    dec.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    return self._bad(codec, bom, pos - held + e.start)
                pos += len(chunk)
        if blank:
            raise VariscopeError(f"file '{shown(self.name)}' is empty")
        return codec, "strict", []

    def _bad(self, codec: str, bom: str | None, at: int) -> tuple[str, str, list[str]]:
        if bom:
            raise VariscopeError(
                f"file '{shown(self.name)}' starts like {codec.upper()} but is not valid "
                f"{codec.upper()} (byte {at}); save it as UTF-8"
            )
        return (
            "cp1252",
            "replace",
            [
                f"file is not valid UTF-8 (byte {at}); read it as Windows-1252/Latin-1 — "
                f"save it as UTF-8 if some characters look wrong"
            ],
        )

    def rows(self) -> Iterator[dict]:
        """Every row as a dict of strings (JSON values as read), in file order; one-line errors."""
        empty = True
        for r in self._rows():
            empty = False
            yield r
        if empty:
            raise _no_rows(self.name)

    def _rows(self) -> Iterator[dict]:
        with open(self.path, encoding=self.codec, errors=self.errors, newline="") as f:
            if self.name.lower().endswith(".json") and f.read(65536).lstrip().startswith("["):
                f.seek(0)
                yield from _rows_of_text(f.read(), self.name)
                return
            f.seek(0)
            if _is_json(self.name):
                yield from _json_lines(split_lines(iter(lambda: f.read(_CHUNK), "")), self.name)
                return
            _allow_long_fields()
            delim = _delimiter(self.name)
            yield from _csv_rows(csv.reader(f, delimiter=delim), self.name, delim)


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
