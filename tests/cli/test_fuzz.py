"""Fuzzing the command line in-process.

Generated flag values, data files and output paths go to ``analysis.cli.main``.
Every run ends with exit 0, or exit 2 and one ``error: ...`` line on stderr
(besides one-line ``warning:``/``note:`` lines and progress bars); never a
traceback, never a file outside the example's own folder, never a temporary
file left behind, never a partial cache entry. The default profile is small
enough for the fast tier; the ``slow`` tests run the same checks longer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from analysis.cli import main

COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}
FAST = settings(max_examples=25, derandomize=True, **COMMON)
LONG = settings(max_examples=300, **COMMON)
TINY = ["--n", "8", "--max-length", "16", "--device", "cpu", "--batch-size", "8"]


# ---------------------------------------------------------------- harness
@pytest.fixture(scope="session")
def fuzz(tmp_path_factory):
    """A session folder: the shared cache (the model loads once) and a small valid data file."""
    root = tmp_path_factory.mktemp("fuzz")
    small = root / "small.csv"
    small.write_text("text,label\n" + "".join(f"a small text number {i},{i % 2}\n" for i in range(12)))
    code, _, err = cli(["curve", "--data", str(small), "--cache-dir", str(root / "cache"), *TINY])
    assert code == 0, err
    return root


def cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m analysis ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def check_run(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err and "warnings.warn(" not in err, err
    lines = [x.strip() for x in err.replace("\r", "\n").splitlines()]
    lines = [x for x in lines if x and "%|" not in x]  # progress bars
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == (1 if code == 2 else 0), err
    assert all(x.startswith(("error: ", "warning: ", "note: ")) for x in lines), err


def check_cache(cache: Path) -> None:
    """No leftover under .tmp; every states entry loads (no partial entry under a final name)."""
    from analysis.store.cache import DiskCache

    tmp = cache / ".tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), list(tmp.iterdir())
    states = cache / "states"
    for d in states.iterdir() if states.is_dir() else []:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert DiskCache(cache).load("states", d.name) is not None, d


def check_folder(work: Path, allowed: set[Path]) -> None:
    """Only the fixtures and the given outputs under the example's folder; no temp or staging names."""
    found = {p for p in work.rglob("*") if p.is_file()}
    assert found <= allowed, found - allowed
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp") or ".staging-" in p.name]


@contextlib.contextmanager
def example_folder(root: Path):
    """A fresh folder per example, also the working directory (so a stray relative write is seen)."""
    work = Path(tempfile.mkdtemp(dir=root, prefix="ex-"))
    (work / "a_folder").mkdir()
    (work / "a_file.json").write_text("{}")
    with contextlib.chdir(work):
        yield work


# ---------------------------------------------------------------- strategies
NASTY = [
    "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "-1", "0", "1", "2", "0.5", "-0.0", "1.5", "", " ", "abc",
    "1:nan", "1:inf", "1:0", "1:-1", "1:9", "::", "0x10", "१२", "\x00", "\x1b[31m", "9" * 40, "-" + "9" * 40,
]  # fmt: skip
NUMBERS = hs.one_of(
    hs.sampled_from(NASTY),
    hs.integers(-(10**30), 10**30).map(str),
    hs.floats(allow_nan=True, allow_infinity=True).map(repr),
    hs.text(max_size=8),
)
CURVE_FLAGS = ["--n", "--seed", "--per-class", "--max-length", "--batch-size", "--bins", "--fraction"]
CURVE_FLAGS += ["--imbalance", "--bootstrap", "--tolerance", "--pooling", "--device", "--dtype", "--rule"]


@hs.composite
def flag_values(draw, flags: list[str]) -> list[str]:
    out: list[str] = []
    for flag in draw(hs.lists(hs.sampled_from(flags), min_size=1, max_size=3, unique=True)):
        out.append(f"{flag}={draw(NUMBERS)}")
    return out


TEXT = hs.text(
    alphabet=hs.one_of(
        hs.characters(codec="utf-8"), hs.sampled_from(list(",;\t|\"'\n\r\x00\x1b\x7f\u2028\ufeff\U0001f600"))
    ),
    max_size=30,
)
LABEL = hs.one_of(hs.sampled_from(["0", "1", "pos", "neg", "inf", "1e400", "nan", "", "-0", "NaN", "0.5"]), TEXT)
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]


@hs.composite
def data_files(draw) -> tuple[str, bytes]:
    """(file name, bytes): tables in several encodings, delimiters and quotings, or raw bytes."""
    ext = draw(hs.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt"]))
    if draw(hs.integers(0, 9)) == 0:
        return "raw" + ext, draw(hs.binary(max_size=300))
    header = draw(hs.sampled_from([["text", "label"], ["label", "text"], ["text"], ["text", "label", "text"]]))
    rows = draw(hs.lists(hs.tuples(TEXT, LABEL), min_size=0, max_size=14))
    if rows and draw(hs.booleans()):  # one very long field
        rows[0] = ("long " * draw(hs.integers(1, 40_000)), rows[0][1])
    buf = io.StringIO()
    quoting = draw(hs.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE]))
    w = csv.writer(buf, delimiter=draw(hs.sampled_from([",", "\t", ";", "|"])), quoting=quoting, escapechar="\\")
    w.writerow(header)
    for t, lab in rows:
        row = [t, lab, t][: len(header)] if header[0] == "text" else [lab, t]
        try:
            w.writerow(row)
        except csv.Error:  # QUOTE_NONE cannot write a lone empty field
            buf.write('""\n')
    enc = draw(hs.sampled_from(ENCODINGS))
    return "data" + ext, buf.getvalue().encode(enc, errors="replace")


LONG_NAME = "é" * 128 + ".json"  # 261 bytes: over the file system's 255
AT_INPUT = "../small.csv"  # the data file itself (the example folder is beside it)
OUTPUTS = hs.sampled_from(
    ["", "out.json", "a_folder", "a_file.json", "missing/deeper/out.json", "a_file.json/x", LONG_NAME, AT_INPUT]
)
BAD_OUTPUTS = {"", "a_folder", "missing/deeper/out.json", "a_file.json/x", LONG_NAME, AT_INPUT}


# ---------------------------------------------------------------- the checks
def _curve_flags(root: Path, flags: list[str]) -> None:
    with example_folder(root) as work:
        code, _, err = cli(
            ["curve", "--data", str(root / "small.csv"), "--cache-dir", str(root / "cache"), *TINY, *flags]
        )
        check_run(code, err)
        check_folder(work, {work / "a_file.json"})
    check_cache(root / "cache")


def _curve_data(root: Path, file: tuple[str, bytes], cols: list[str]) -> None:
    name, content = file
    with example_folder(root) as work:
        (work / name).write_bytes(content)
        code, _, err = cli(["curve", "--data", name, "--cache-dir", str(root / "cache"), *TINY, *cols])
        check_run(code, err)
        check_folder(work, {work / name, work / "a_file.json"})
    check_cache(root / "cache")


def _curve_outputs(root: Path, json_out: str, csv_out: str) -> None:
    with example_folder(root) as work:
        args = ["curve", "--data", str(root / "small.csv"), "--cache-dir", str(root / "cache"), *TINY]
        code, _, err = cli([*args, "--json", json_out, "--csv", csv_out])
        check_run(code, err)
        allowed = {work / "a_file.json"}
        if code == 0:
            allowed |= {work / p for p in (json_out, csv_out) if p}
            for p in (json_out, csv_out):
                assert not p or (work / p).is_file()
        else:
            bad = {json_out, csv_out} & BAD_OUTPUTS
            assert bad or json_out == csv_out, err  # only a bad output path (or one file twice) fails here
        assert (root / "small.csv").read_text().startswith("text,label"), "an output overwrote the input"
        check_folder(work, allowed)
    check_cache(root / "cache")


TRAIN_BAD = {
    "--lr": ["nan", "inf", "-inf", "0", "-1e-3", "abc", "1e400", ""],
    "--steps": ["0", "-5", "nan", "1.5", "abc", str(-(10**30))],
    "--epochs": ["0", "-1", "nan", "inf", "x"],
    "--eval-n": ["1", "0", "-3", "nan"],
    "--eval-every": ["0", "-1", "inf"],
    "--k": ["0", "-2", "nan"],
    "--lora-r": ["0", "-8", "1e400"],
    "--classifier-layer": ["0", "-1", "99", "nan"],
    "--save": ["a_file.json", "a_file.json/x"],
    "--log": ["missing/x.jsonl", "a_folder"],
    "--json": ["a_folder", "missing/x.json"],
}
BENCH_BAD = {"--reps": ["0", "-1", "nan", "x"], "--json": ["a_folder"], "--plots": ["a_file.json"]}


@hs.composite
def bad_flags(draw, table: dict[str, list[str]]) -> list[str]:
    flag = draw(hs.sampled_from(sorted(table)))
    return [f"{flag}={draw(hs.sampled_from(table[flag]))}"]


def _fails_fast(root: Path, argv: list[str]) -> None:
    """Refused with exit 2 before a single training step (the training loop is replaced by one that fails)."""
    from unittest import mock

    def no_training(*a, **k):
        raise AssertionError(f"{argv} reached the training loop before it was refused")

    with example_folder(root) as work, mock.patch("analysis.training.trainer.fit", no_training):
        code, _, err = cli(argv)
        check_run(code, err)
        assert code == 2, (argv, err)
        check_folder(work, {work / "a_file.json"})


def _train(root: Path, flags: list[str]) -> None:
    extra = [] if any(f.startswith(("--classifier-layer", "--k")) for f in flags) else ["--classifier-layer=2"]
    data = ["--data", str(root / "small.csv"), "--cache-dir", str(root / "cache"), *TINY]
    _fails_fast(root, ["train", *data, "--steps=1", *extra, *flags])


REPRO_BAD = {
    "--lr-grid": ["nan,-1", "", ",", "inf", "1e-4,nan", "-1", "0"],
    "--seeds": ["", ",", " "],
    "--plan": ["", ",", "minilm", "minilm:rotten_tomatoes@0", "minilm:"],
    "--ks": ["0", "1,-2"],
    "--models": ["", ","],
    "--json": [LONG_NAME, "a_folder"],
}


def _reproduce(root: Path, flags: list[str]) -> None:
    _fails_fast(root, ["reproduce", "--json", "r.json", "--doc", "r.md", "--cache-dir", str(root / "cache"), *flags])


@hs.composite
def jsonl_files(draw) -> tuple[str, bytes]:
    """JSON lines with edge cases: U+2028 inside strings, big integers, labels of mixed types."""
    import json

    labels = hs.sampled_from([0, 1, 2**53, 2**53 + 1, -(2**70), "pos", "neg", True, None, 1.5, {"a": 1}, [1]])
    text = hs.one_of(TEXT, hs.just("a\u2028b"), hs.just("line\u2029sep\x85"))
    rows = draw(hs.lists(hs.tuples(text, labels), min_size=0, max_size=12))
    body = "".join(json.dumps({"text": t, "label": y}, ensure_ascii=draw(hs.booleans())) + "\n" for t, y in rows)
    return "data.jsonl", body.encode("utf-8", errors="replace")


def _bench(root: Path, flags: list[str], only: str) -> None:
    _fails_fast(root, ["bench", "--device", "cpu", *flags, f"--only=nosuch{only}"])


COLS = hs.lists(hs.sampled_from(["--text-col=label", "--label-col=text", "--bins=3", "--n=0", "--text-col=x"]))


@FAST
@given(flags=flag_values(CURVE_FLAGS))
def test_fuzz_curve_flags(fuzz, flags):
    _curve_flags(fuzz, flags)


@FAST
@given(file=data_files(), cols=COLS)
def test_fuzz_curve_data(fuzz, file, cols):
    _curve_data(fuzz, file, cols)


@FAST
@given(json_out=OUTPUTS, csv_out=OUTPUTS)
def test_fuzz_curve_outputs(fuzz, json_out, csv_out):
    _curve_outputs(fuzz, json_out, csv_out)


@settings(max_examples=15, derandomize=True, **COMMON)
@given(flags=bad_flags(TRAIN_BAD), bench_flags=bad_flags(BENCH_BAD), only=hs.text(max_size=5))
def test_fuzz_train_and_bench_fail_fast(fuzz, flags, bench_flags, only):
    _train(fuzz, flags)
    _bench(fuzz, bench_flags, only)


@settings(max_examples=15, derandomize=True, **COMMON)
@given(flags=bad_flags(REPRO_BAD))
def test_fuzz_reproduce_list_flags_fail_fast(fuzz, flags):
    _reproduce(fuzz, flags)


@FAST
@given(file=jsonl_files())
def test_fuzz_jsonl_edge_cases(fuzz, file):
    _curve_data(fuzz, file, [])


@pytest.mark.slow
@LONG
@given(flags=flag_values(CURVE_FLAGS), file=data_files(), cols=COLS, json_out=OUTPUTS, csv_out=OUTPUTS)
def test_fuzz_cli_long(fuzz, flags, file, cols, json_out, csv_out):
    _curve_flags(fuzz, flags)
    _curve_data(fuzz, file, cols)
    _curve_outputs(fuzz, json_out, csv_out)


@pytest.mark.slow
@LONG
@given(flags=bad_flags(TRAIN_BAD), bench_flags=bad_flags(BENCH_BAD), only=hs.text(max_size=5))
def test_fuzz_train_and_bench_long(fuzz, flags, bench_flags, only):
    _train(fuzz, flags)
    _bench(fuzz, bench_flags, only)
