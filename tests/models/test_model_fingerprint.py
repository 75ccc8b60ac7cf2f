"""A local model folder's fingerprint covers every byte of its weights and tokenizer files."""

import os

import pytest

from analysis.models.load import _folder_fingerprint
from analysis.store import filehash


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VARISCOPE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "model"
    f.mkdir()
    (f / "config.json").write_text('{"num_hidden_layers": 2}')
    (f / "model.safetensors").write_bytes(os.urandom(5 << 20))
    (f / "tokenizer.json").write_text('{"vocab": {"a": 0, "b": 1, "c": 2, "d": 3}}')
    (f / "README.md").write_text("notes")
    return f


def test_permuting_the_middle_of_the_weights_changes_the_fingerprint(folder):
    before = _folder_fingerprint(folder)
    w = bytearray((folder / "model.safetensors").read_bytes())
    mid = len(w) // 2
    w[mid : mid + 4096], w[mid + 4096 : mid + 8192] = w[mid + 4096 : mid + 8192], w[mid : mid + 4096]
    (folder / "model.safetensors").write_bytes(bytes(w))  # same size, head and tail unchanged
    assert _folder_fingerprint(folder) != before


def test_editing_the_tokenizer_changes_the_fingerprint_and_notes_do_not(folder):
    before = _folder_fingerprint(folder)
    (folder / "README.md").write_text("other notes")
    assert _folder_fingerprint(folder) == before
    (folder / "tokenizer.json").write_text('{"vocab": {"a": 0, "b": 1, "c": 3, "d": 2}}')
    assert _folder_fingerprint(folder) != before


def test_an_unchanged_file_is_hashed_once_across_processes(folder, monkeypatch):
    _folder_fingerprint(folder)
    monkeypatch.setattr(filehash, "_memo", {})  # a new process: only the memo file remembers
    reads = []
    real = filehash.hashlib.file_digest
    monkeypatch.setattr(filehash.hashlib, "file_digest", lambda *a: reads.append(1) or real(*a))
    _folder_fingerprint(folder)
    assert reads == []
    os.utime(folder / "model.safetensors", ns=(1, 1))  # a new mtime: hashed again
    _folder_fingerprint(folder)
    assert len(reads) == 1
