"""Command-line refusals that must name the real cause and come before the costly work they would spoil."""

import numpy as np
import pytest

from analysis.cards.scores import CardsConfig, layer_cards
from analysis.cli.main import main
from analysis.errors import VariscopeError
from analysis.stream.stats import KeptRows


def _csv(tmp_path, n=40):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f"text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(n)))
    return str(p)


def _never(*a, **k):
    raise AssertionError("the costly step ran")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("keep", ["1", "2", "9"])
def test_cards_stream_with_too_small_a_state_sample_says_keep_before_streaming(tmp_path, capsys, monkeypatch, keep):
    import analysis.stream.kept as kept

    monkeypatch.setattr(kept, "stream_kept", _never)
    args = ["cards", "--data", _csv(tmp_path), "--stream", "--keep", keep, "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    line = _error_line(capsys)
    assert f"--keep {keep} is too few" in line and "--keep 10 or more" in line
    assert "--folds" not in line and "at least 2 classes" not in line


def test_cards_on_a_state_sample_name_keep_and_never_an_impossible_fold_count():
    with pytest.raises(VariscopeError) as e:
        CardsConfig().validate(np.zeros(12, dtype=int), kept=True)
    assert "state sample of 12 texts (--keep) holds texts of 1 class" in str(e.value)
    with pytest.raises(VariscopeError) as e:
        CardsConfig().validate(np.array([0] * 11 + [1]), kept=True)
    assert "keep more states (--keep)" in str(e.value) and "--folds" not in str(e.value)
    with pytest.raises(VariscopeError) as e:
        CardsConfig().validate(np.array([0] * 11 + [1, 1, 1]))
    assert "or --folds 3" in str(e.value)


def test_a_knn_k_covering_every_other_text_is_refused(rng):
    labels = np.arange(40) % 2
    states = rng.normal(size=(2, 40, 8)).astype(np.float32)
    with pytest.raises(VariscopeError, match="k=1000 neighbours, but each of the 40 texts has 39 others"):
        layer_cards(states, labels, CardsConfig(k=1000))
    with pytest.raises(VariscopeError, match="k=39 "):
        CardsConfig(k=39).validate(labels)
    CardsConfig(k=38).validate(labels)


def test_curve_stream_band_on_too_small_a_sample_fails_before_the_forward_pass(tmp_path, capsys, monkeypatch):
    import analysis.stream.curve as curve

    monkeypatch.setattr(curve, "load_for", _never)
    args = ["curve", "--data", _csv(tmp_path), "--stream", "--keep", "1", "--bootstrap", "20", "--device", "cpu"]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 2
    line = _error_line(capsys)
    assert "kept rows of 1 texts (--keep)" in line and "use --keep" in line


def test_the_band_check_predicts_the_kept_rows_and_the_keep_it_suggests_suffices():
    from analysis.stream.stats import check_band_sample, kept_rows

    labels = np.array([0] * 30 + [1] * 3 + [2] * 7)
    for seed in range(5):
        s = KeptRows(7, seed)
        s.update(np.zeros((1, 40, 1), np.float32), labels, np.arange(40))
        np.testing.assert_array_equal(s.index, kept_rows(40, 7, seed))
        with pytest.raises(VariscopeError) as e:
            check_band_sample(labels, ["a", "b", "c"], 2, seed)
        need = int(str(e.value).split("use --keep ")[1].split()[0])
        check_band_sample(labels, ["a", "b", "c"], need, seed)
        with pytest.raises(VariscopeError):
            check_band_sample(labels, ["a", "b", "c"], need - 1, seed)


@pytest.mark.parametrize(("plan", "needle"), [("minilm:rotten_tomatoes@0", "at least 1"), ("minilm:", "empty")])
def test_reproduce_plan_is_checked_at_parse_time(tmp_path, capsys, monkeypatch, plan, needle):
    import analysis.cli.reproduce as rep

    monkeypatch.setattr(rep, "run", _never)
    out = ["--json", str(tmp_path / "r.json"), "--doc", str(tmp_path / "r.md"), "--cache-dir", str(tmp_path / "c")]
    assert main(["reproduce", "--plan", plan, *out]) == 2
    assert needle in _error_line(capsys)
    assert main(["reproduce", "--ks", "0,1", *out]) == 2
    assert "at least 1" in _error_line(capsys)
    assert main(["reproduce", "--dtype", "float8", *out]) == 2
    assert "unknown dtype 'float8'" in _error_line(capsys)
    assert main(["reproduce", "--dtype", "bf16", "--device", "cpu", *out]) == 2  # runs would train in float32
    assert "on a CPU the training runs keep float32 weights" in _error_line(capsys)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.md").exists()


def test_reproduce_dtype_reaches_every_curve_and_run_and_the_doc_says_so():
    from dataclasses import asdict

    from analysis.reproduce.config import ReproConfig
    from analysis.reproduce.report import _part_lines
    from analysis.reproduce.runs import acfg

    rc = ReproConfig(dtype="bfloat16")
    assert acfg(rc, "minilm", "rotten_tomatoes", 10, 0).dtype == "bfloat16"
    assert acfg(ReproConfig(), "minilm", "rotten_tomatoes", 10, 0).dtype == "auto"  # the old cache keys
    part = {"models": ["minilm"], "settings": {**asdict(rc), "models": ["minilm"], "tasks": ["rotten_tomatoes"]}}
    assert any(line.startswith("- Precision: `bfloat16`") for line in _part_lines(part, None))
    part["settings"]["dtype"] = "auto"
    assert not any(line.startswith("- Precision") for line in _part_lines(part, None))


@pytest.mark.parametrize(("rank", "printed"), [("0", 1), ("1", 0)])
def test_under_torchrun_only_rank_0_prints_an_input_error(tmp_path, capsys, monkeypatch, rank, printed):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["curve", "--data", _csv(tmp_path), "--stream", "--keep", "-1", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and sum(x.startswith("error:") for x in err.splitlines()) == printed, err


def test_a_process_own_failure_is_printed_by_that_process(capsys, monkeypatch):
    from analysis.distributed import ProcessError

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")

    def fail(a):
        raise ProcessError("process 1 of 2: disk full")

    monkeypatch.setattr("analysis.cli.info.cmd_cache", fail)
    assert main(["cache", "list"]) == 2
    assert "error: process 1 of 2: disk full" in capsys.readouterr().err
