"""Data files: every bad one is one clear line (CLI exit 2, library VariscopeError) and leaves no cache entry;
awkward but valid ones (encodings, scripts, long rows, odd labels) give a curve."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from analysis.cli import main
from analysis.errors import VariscopeError


def _csv(tmp, name, text, mode="w"):
    p = Path(tmp) / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def words(i):
    return f"sample text number {i} about things"


def _one_error(capsys, code, needle):
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    return err[0]


BAD_FILES = {
    "one_class": ("a.csv", "text,label\n" + "".join(f"{words(i)},x\n" for i in range(6)), "at least 2 classes"),
    "single_example": (
        "a.csv",
        "text,label\n" + "".join(f"{words(i)},ham\n" for i in range(5)) + "lonely,spam\n",
        "class 'spam' has only 1 example",
    ),
    "float_labels": ("a.csv", "text,label\n" + "".join(f"{words(i)},{i * 0.37:.2f}\n" for i in range(8)), "regression"),
    "blank_labels": ("a.csv", "text,label\n" + "".join(f"{words(i)},\n" for i in range(5)) + "x,nan\n", "is empty"),
    "missing_column": ("a.csv", "sentence,y\nhello,1\nworld,0\n", "columns are: sentence, y"),
    "empty_file": ("a.csv", "", "is empty"),
    "binary": ("a.csv", bytes(range(256)) * 8, "not a text file"),
    "wrong_delimiter": ("a.csv", "text;label\nhello;1\nworld;0\n", "single column"),
    "duplicate_header": ("a.csv", "text,label,text\na,1,b\nc,0,d\n", "duplicated column"),
    "all_texts_empty": ("a.csv", "text,label\n ,1\n\t,0\n  ,1\n", "no usable rows"),
    "header_only": ("a.csv", "text,label\n", "no rows"),
    "bad_jsonl": ("a.jsonl", '{"text": "a", "label": 1}\n{oops\n', "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_data_file_is_one_line_in_cli_and_library_and_caches_nothing(case, tmp_path, capsys):
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig, get_states
    from analysis.store.cache import DiskCache

    name, content, needle = BAD_FILES[case]
    f = _csv(tmp_path, name, content)
    cache = tmp_path / "cache"
    code = main(["curve", "--data", str(f), "--n", "0", "--device", "cpu", "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and needle in err[0] and err[0].startswith("error: "), err
    with pytest.raises(VariscopeError, match=needle.replace("(", r"\(")):
        get_states(
            AnalysisConfig(task=TaskConfig(name=None, data=str(f)), sampling=SampleConfig(n=None), device="cpu"),
            cache=DiskCache(cache),
        )
    assert not (cache / "states").exists() or not list((cache / "states").iterdir())


GOOD_FILES = {
    "latin1": (
        "a.csv",
        ("text,label\n" + "".join(f"caf\xe9 na\xefve {i},{i % 2}\n" for i in range(8))).encode("latin-1"),
        "not valid UTF-8",
    ),
    "some_empty_texts": (
        "a.csv",
        "text,label\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(8)) + " ,1\n,0\n",
        "dropped 2 empty",
    ),
    "huge_text": ("a.csv", "text,label\n" + "".join(f"{words(i)} {'word ' * 20000},{i % 2}\n" for i in range(4)), None),
    "scripts": (
        "a.csv",
        "text,label\n"
        + "\n".join(
            f"{t},{i % 2}"
            for i, t in enumerate(
                ["😀 great film 🎬", "映画はとても良かった", "الفيلم كان رائعا", "פילם נהדר", "Фильм отличный", "ok 🙂"]
            )
        )
        + "\n",
        None,
    ),
    "n_too_large": ("a.csv", "text,label\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(6)), "using all"),
}


@pytest.mark.parametrize("case", sorted(GOOD_FILES))
def test_awkward_but_valid_data_files_give_a_finite_curve_and_their_warning(case, tmp_path, capsys):
    name, content, note = GOOD_FILES[case]
    f = _csv(tmp_path, name, content)
    out = tmp_path / "o.json"
    code = main(
        [
            "curve",
            "--data",
            str(f),
            "--n",
            "50",
            "--device",
            "cpu",
            "--max-length",
            "64",
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    d = json.loads(out.read_text())
    assert all(np.isfinite(d["variability"]))
    if note:
        assert note in err and note in " ".join(d["warnings"])


def test_an_upload_over_the_size_limit_is_refused(monkeypatch):
    from analysis.data import files as datafiles

    monkeypatch.setattr(datafiles, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(VariscopeError, match="the limit is"):
        datafiles.parse_table(b"text,label\n" + b"x,1\n" * 500, "big.csv")


def test_inf_and_1e400_labels_are_class_names_not_numbers(tmp_path, capsys):
    rows = "".join(f"{words(i)},{'inf' if i % 2 else '1e400'}\n" for i in range(12))
    f = _csv(tmp_path, "a.csv", "text,label\n" + rows)
    out = tmp_path / "o.json"
    code = main(["curve", "--data", str(f), "--n", "0", "--max-length", "16", "--device", "cpu"]
                + ["--cache-dir", str(tmp_path / "c"), "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(json.loads(out.read_text())["counts"]) == ["1e400", "inf"]


def test_long_rows_and_utf16_work_and_escape_codes_folders_and_fifos_are_one_line(tmp_path, capsys):
    base = ["curve", "--n", "0", "--max-length", "16", "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    long = _csv(
        tmp_path,
        "long.csv",
        "text,label\n" + "x" * 200_000 + ",0\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(7)),
    )
    assert main([*base, "--data", str(long)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    u16 = _csv(
        tmp_path, "u16.csv", ("text,label\n" + "".join(f"caf\xe9 {i},{i % 2}\n" for i in range(8))).encode("utf-16")
    )
    assert main([*base, "--data", str(u16)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    ctl = _csv(tmp_path, "ctl.csv", "text,label\n" + "".join(f"{words(i)},\x1b[31mred\n" for i in range(6)))
    line = _one_error(capsys, main([*base, "--data", str(ctl)]), "at least 2 classes")
    assert "\x1b" not in line and "\\x1b" in line
    (tmp_path / "adir").mkdir()
    _one_error(capsys, main([*base, "--data", str(tmp_path / "adir")]), "folder")
    os.mkfifo(tmp_path / "fifo")
    _one_error(capsys, main([*base, "--data", str(tmp_path / "fifo")]), "not a regular file")
