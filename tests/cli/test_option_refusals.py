"""Bad command-line options are one clear line (exit 2), and train refuses them before it loads or trains."""

import pytest

from analysis.cli import main
from analysis.errors import VariscopeError


def _one_error(capsys, code, needle):
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    return err[0]


def _main(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return e.code


def _no_training(monkeypatch):
    """train must refuse before it selects layers, loads data or a model, or trains."""
    from analysis.cli import train as cli_train

    def boom(*a, **k):
        raise AssertionError("got past the checks")

    monkeypatch.setattr(cli_train, "resolve_selection", boom)
    monkeypatch.setattr(cli_train, "train", boom)


TRAIN = ["train", "--n", "8", "--max-length", "16", "--device", "cpu", "--classifier-layer", "2"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--per-class", "0"], "per-class cap"),
        (["--per-class", "-2"], "per-class cap"),
        (["--max-length", "0"], "max length"),
        (["--max-length", "4096"], "above this model's limit"),
        (["--task", "../../etc/passwd"], "unknown task"),
        (["--imbalance", "1:x"], "imbalance must look like 1:9"),
        (["--device", "tpu"], "unknown device"),
        (["--dtype", "int3"], "unknown dtype"),
        (["--batch-size", "0"], "batch size"),
    ],
)
def test_bad_curve_options_are_one_line(args, needle, tmp_path, capsys):
    code = main(["curve", "--n", "20", "--cache-dir", str(tmp_path / "c"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--classifier-layer", "9", "--tune-layers", "9"], "out of range"),
        (["--classifier-layer", "2", "--tune-layers", "2,3"], "above the classifier layer"),
        (["--classifier-layer", "2", "--tune-layers", "a,b"], "comma-separated"),
        (["--strategy", "top", "--k", "0"], "must be ≥ 1"),
    ],
)
def test_bad_training_layer_selections_are_one_line(args, needle, tmp_path, capsys):
    code = main(["train", "--n", "40", "--steps", "2", "--cache-dir", str(tmp_path / "c"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--seed", "-1"], "seed must be at least 0"),
        (["--imbalance", "1:nan"], "positive finite"),
        (["--imbalance", "1:inf"], "positive finite"),
        (["--bins", "0"], "bins must be at least 2"),
        (["--bins", "99999999999999999999"], "bins must be at most 1000"),
        (["--bootstrap", "-3"], "bootstrap resamples"),
        (["--bootstrap", "100000000"], "bootstrap resamples"),
        (["--json", ""], "needs a path"),
    ],
)
def test_bad_curve_numbers_are_one_line_and_cache_nothing(args, needle, tmp_path, capsys):
    _one_error(capsys, main(["curve", "--n", "8", "--cache-dir", str(tmp_path / "c"), *args]), needle)
    assert not (tmp_path / "c" / "states").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "nan"], "learning rate must be a finite number"),
        (["--lr", "0"], "learning rate must be positive"),
        (["--steps", "0"], "steps must be at least 1"),
        (["--epochs", "-1"], "epochs must be positive"),
        (["--eval-n", "1"], "at least 2"),
        (["--eval-every", "0"], "eval-every must be at least 1"),
        (["--lora-r", "0"], "LoRA rank"),
        (["--classifier-layer", "0"], "classifier layer must be at least 1"),
        (["--log", "/nonexistent/x.jsonl"], "does not exist"),
        (["--seed", "abc"], "invalid int value"),  # argparse: one line too
    ],
)
def test_bad_train_numbers_and_paths_are_refused_before_loading(args, needle, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    _one_error(capsys, _main([*TRAIN, "--cache-dir", str(tmp_path / "c"), *args]), needle)
    assert not (tmp_path / "c").exists()


def test_the_settings_layer_checks_training_numbers_for_cli_and_app():
    from analysis.settings import train_settings

    ts = train_settings({"steps": "150", "lr": "1e-4", "train_batch": 16, "eval_n": 300})
    assert (ts.steps, ts.lr, ts.train_batch, ts.eval_n) == (150, 1e-4, 16, 300)
    assert train_settings({}).steps == 200 and train_settings({"epochs": 1.5}).steps is None
    for bad in ({"lr": float("nan")}, {"lr": "inf"}, {"steps": 0}, {"steps": 2, "epochs": 1}, {"k": 0}):
        with pytest.raises(VariscopeError):
            train_settings(bad)


def test_train_variability_strategy_computes_states_in_the_given_cache(tmp_path, capsys, monkeypatch):
    from analysis.cli import train as cli_train

    def stop(*a, **k):
        raise VariscopeError("stopped before training")

    monkeypatch.setattr(cli_train, "train", stop)
    cache = tmp_path / "given"
    f = tmp_path / "a.csv"
    f.write_text("text,label\n" + "".join(f"sample text number {i} about things,{i % 2}\n" for i in range(8)))
    args = ["train", "--data", str(f), "--n", "0", "--max-length", "16", "--device", "cpu", "--strategy", "variability"]
    _one_error(capsys, main([*args, "--k", "1", "--cache-dir", str(cache)]), "stopped before training")
    assert len(list((cache / "states").iterdir())) == 1
