"""Outputs never destroy a person's files: no output aimed at an input, --overwrite replaces the run's own
files only, names over the file system's limit are one line, and results get the usual permissions."""

import os
import stat
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.errors import VariscopeError
from analysis.store.atomic import check_distinct, write_atomic

DATA = "text,label\n" + "".join(f"some text {i},{'ab'[i % 2]}\n" for i in range(12))


def _one_error(capsys, code, needle):
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


@pytest.fixture
def no_work(monkeypatch):
    """Every subcommand must refuse before it computes anything."""
    from analysis import pipeline

    def boom(*a, **k):
        raise AssertionError("got past the path checks")

    monkeypatch.setattr(pipeline, "load_sample", boom)
    monkeypatch.setattr(pipeline, "cached_model", boom)


@pytest.mark.parametrize("flag", ["--csv", "--json"])
@pytest.mark.parametrize("cmd", ["curve", "cards"])
def test_output_equal_to_the_data_file_is_refused_and_the_data_kept(tmp_path, capsys, no_work, cmd, flag):
    victim = tmp_path / "victim.csv"
    victim.write_text(DATA)
    spelled = str(tmp_path / "sub" / ".." / "victim.csv")
    (tmp_path / "sub").mkdir()
    _one_error(capsys, main([cmd, "--data", str(victim), flag, spelled]), "is the input --data")
    assert victim.read_text() == DATA


def test_json_and_csv_naming_one_file_are_refused(tmp_path, capsys, no_work):
    (tmp_path / "d.csv").write_text(DATA)
    x = str(tmp_path / "x.json")
    _one_error(capsys, main(["curve", "--data", str(tmp_path / "d.csv"), "--json", x, "--csv", x]), "the same file")


def test_a_hard_link_to_the_input_is_the_input(tmp_path):
    (tmp_path / "d.csv").write_text(DATA)
    os.link(tmp_path / "d.csv", tmp_path / "alias.csv")
    with pytest.raises(VariscopeError, match="is the input"):
        check_distinct({"--csv": str(tmp_path / "alias.csv")}, {"--data": str(tmp_path / "d.csv")})


def test_save_folder_holding_the_input_is_refused(tmp_path, capsys, no_work):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "mydata.csv").write_text(DATA)
    (proj / "notes.txt").write_text("mine")
    code = main(
        ["train", "--data", str(proj / "mydata.csv"), "--classifier-layer", "2", "--save", str(proj), "--overwrite"]
    )
    _one_error(capsys, code, "holds the input --data")
    assert sorted(p.name for p in proj.iterdir()) == ["mydata.csv", "notes.txt"]


def test_overwrite_replaces_only_the_runs_files_and_keeps_their_modes(tmp_path):
    from analysis.training.export import save_run

    class R:
        def __init__(self, label):
            self.label = label

        def to_dict(self):
            return {"label": self.label}

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "result.json").write_text("old")
    os.chmod(out / "result.json", 0o640)
    save_run(R("new"), str(out), overwrite=True)  # type: ignore[arg-type]
    assert (out / "notes.txt").read_text() == "mine"
    assert '"new"' in (out / "result.json").read_text()
    assert stat.S_IMODE((out / "result.json").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_new_files_and_folders_follow_the_umask(tmp_path):
    from analysis.training.export import save_run

    class R:
        def to_dict(self):
            return {}

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.json", "{}")
        save_run(R(), str(tmp_path / "run"))  # type: ignore[arg-type]
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "run" / "result.json").stat().st_mode) == 0o644
    os.chmod(tmp_path / "a.json", 0o604)
    write_atomic(tmp_path / "a.json", "[]")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o604


@pytest.mark.parametrize("flag", ["--data", "--model", "--json", "--csv"])
def test_a_name_over_255_bytes_is_one_line(tmp_path, capsys, no_work, flag):
    (tmp_path / "d.csv").write_text(DATA)
    long = str(tmp_path / ("é" * 130))  # 260 bytes
    argv = ["curve", "--data", str(tmp_path / "d.csv")]
    argv = [*argv, flag, long] if flag != "--data" else ["curve", "--data", long]
    _one_error(capsys, main(argv), "the limit is 255")


def test_a_save_name_over_255_bytes_is_one_line(tmp_path, capsys, no_work):
    _one_error(
        capsys, main(["train", "--classifier-layer", "2", "--save", str(tmp_path / ("x" * 256))]), "limit is 255"
    )


def test_long_names_are_refused_by_the_library_too(tmp_path):
    from analysis.data.tasks import TaskConfig, load_task

    with pytest.raises(VariscopeError, match="limit is 255"):
        write_atomic(tmp_path / ("x" * 300), "{}")
    with pytest.raises(VariscopeError, match="limit is 255"):
        load_task(TaskConfig(name=None, data=str(Path(tmp_path) / ("x" * 300))))


def _no_training(monkeypatch):
    """train must refuse before it selects layers, loads data or a model, or trains."""
    from analysis.cli import train as cli_train

    def boom(*a, **k):
        raise AssertionError("got past the checks")

    monkeypatch.setattr(cli_train, "resolve_selection", boom)
    monkeypatch.setattr(cli_train, "train", boom)


TRAIN = ["train", "--n", "8", "--max-length", "16", "--device", "cpu", "--classifier-layer", "2"]


def test_train_save_into_a_non_empty_folder_needs_overwrite_and_keeps_its_files(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep me")
    _one_error(capsys, main([*TRAIN, "--save", str(tmp_path / "run")]), "pass --overwrite")
    assert (tmp_path / "run" / "mine.txt").read_text() == "keep me"


def test_train_save_to_an_existing_file_fails_before_training(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "f").write_text("x")
    _one_error(capsys, main([*TRAIN, "--save", str(tmp_path / "f")]), "it is a file, not a folder")


def test_json_to_a_folder_is_refused_and_leaves_nothing(tmp_path, capsys):
    d = tmp_path / "out"
    d.mkdir()
    _one_error(capsys, main(["curve", "--n", "8", "--cache-dir", str(tmp_path / "c"), "--json", str(d)]), "folder")
    assert list(d.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    from analysis.store.atomic import write_atomic

    with pytest.raises(VariscopeError, match="it is a folder"):
        write_atomic(d, "x")
    assert list(d.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_run_publishes_the_folder_whole_or_nothing(tmp_path, monkeypatch):
    from analysis.training import export

    class R:
        def to_dict(self):
            return {"label": "x"}

    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(VariscopeError, match="not empty"):
        export.save_run(R(), str(out))  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    export.save_run(R(), str(out), overwrite=True)  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["old.txt", "result.json"]  # only the run's own files
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left
    monkeypatch.setattr(export, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(VariscopeError, match="No space"):
        export.save_run(R(), str(tmp_path / "new"))  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing half-written
