"""The sweep: every layer trained, the oracle and its tied set, the selectors scored, train_args that repeat a run."""

import json

import pytest
from _sweep_records import write_three_class_csv

from analysis.selectors.table import SELECTORS
from analysis.sweep.config import SweepConfig, parse_layers
from analysis.sweep.stats import oracle_layer, spearman, tied_layers

DONE_KEYS = {"layers", "metric", "per_seed", "mean", "oracle_layer", "tied_layers", "selectors", "lr", "settings"}


def test_tied_set_uses_the_paired_interval_with_a_binomial_floor():
    per_seed = {1: [0.80, 0.81, 0.79], 2: [0.70, 0.71, 0.69], 3: [0.795, 0.805, 0.80]}
    tied, how = tied_layers(per_seed, 1, n_eval=600)
    assert tied == [1, 3] and "floor" in how  # layer 3 lies within the held-out sampling error
    one = tied_layers({1: [0.8], 2: [0.79]}, 1, 600)
    assert one == ([1], "one seed: no interval, the tied set is the oracle alone")


def test_a_diverged_layer_is_never_the_oracle():
    nan = float("nan")
    assert oracle_layer([1, 2, 3], [0.7, nan, 0.8]) == 3  # np.argmax would pick the NaN
    assert oracle_layer([1, 2, 3], [0.8, 0.6, 0.8]) == 1  # equal means: the lowest layer
    with pytest.raises(ValueError, match="diverged"):
        oracle_layer([1, 2], [nan, nan])


def test_a_tied_layer_is_a_tie_by_the_reproductions_paired_rule():
    from analysis.reproduce.stats import binomial_sd, paired

    # the same difference at every seed: sd 0, so only the binomial floor keeps the interval from width 0
    per_seed = {1: [0.80, 0.81, 0.79], 2: [0.78, 0.79, 0.77], 3: [0.74, 0.75, 0.73]}
    tied, how = tied_layers(per_seed, 1, n_eval=600)
    for layer in (2, 3):
        p = (0.80 + sum(per_seed[layer]) / 3) / 2
        d = paired(dict(enumerate(per_seed[1])), dict(enumerate(per_seed[layer])), binomial_sd(p, 600))
        assert (layer in tied) == (d["outcome"] == "tie") and d["floored"]
    assert tied == [1, 2] and "floored at the binomial sd on 600 texts" in how


def test_train_args_parse_back_to_the_sweeps_config_with_device_and_dtype_resolved():
    from dataclasses import replace

    from analysis.cli import train
    from analysis.cli.common import OneLineParser, config_from_args
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.sweep.train_args import with_train_args

    task = TaskConfig(name=None, data="x.csv", text_col="body", text_pair_col="b", label_col="y", bins=3)
    cfg = AnalysisConfig(
        model="minilm",
        task=task,
        sampling=SampleConfig(n=None, per_class=40, seed=7, imbalance=(1.0, 2.5), fraction=0.5),
        max_length=64,
        pooling="first",
        representation="raw",
        trust_remote_code=True,
    )
    sc = SweepConfig(layers=(2, 3), k=2, seeds=(4, 5), steps=9, batch_size=8, eval_n=30)
    rec = with_train_args({"layers": [2, 3], "lr": [1e-3, 3e-4]}, cfg, sc, "cpu", "autocast-bfloat16")
    p = OneLineParser()
    train.register(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["train", *rec["train_args"][1]])
    assert config_from_args(a) == replace(cfg, device="cpu", dtype="autocast-bfloat16")
    assert (a.classifier_layer, a.tune_layers, a.steps, a.lr, a.train_batch) == (3, "2,3", 9, 3e-4, 8)
    assert (a.eval_n, a.train_seed) == (30, 4)  # the first seed's run, whose final loss the record keeps


def test_spearman_skips_layers_without_a_score_and_is_none_when_undefined():
    assert spearman([None, 1.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert spearman(None, [0.1, 0.2]) is None and spearman([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]) is None


def test_layers_flag_and_config_checks_are_one_line():
    from analysis.errors import VariscopeError

    assert parse_layers("2-4,6", 6) == (2, 3, 4, 6)
    with pytest.raises(VariscopeError, match="--layers"):
        parse_layers("a-b", 6)
    with pytest.raises(VariscopeError, match="within 1-6"):
        SweepConfig(layers=(0, 1)).check(6)
    assert SweepConfig(layers=(1, 2), seeds=(0,), lr_grid=(1e-3, 3e-3), lr_steps=5, steps=10).total_steps == 40


@pytest.fixture
def three_class_csv(tmp_path):
    return write_three_class_csv(tmp_path / "three.csv")


@pytest.mark.slow  # trains a dozen tiny runs of MiniLM
def test_sweep_writes_the_record_and_train_args_repeat_the_oracle_run(three_class_csv, tmp_path, capsys, model_roots):
    from analysis.cli.main import main

    out, again = tmp_path / "sweep.json", tmp_path / "train.json"
    common = ["--model", "minilm", "--data", str(three_class_csv), "--n", "45", "--cache-dir", str(tmp_path / "c")]
    argv = ["sweep", *common, "--layers", "5-6", "--seeds", "0", "--steps", "4", "--eval-n", "15"]
    argv += ["--lr-grid", "1e-3,3e-3", "--lr-steps", "2"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sweep: 2 layers" in printed and "training steps" in printed and "oracle layer" in printed
    d = json.loads(out.read_text())
    assert DONE_KEYS | {"train_args"} <= set(d) and d["layers"] == [5, 6]
    assert len(d["lr"]) == len(d["train_args"]) == len(d["per_seed"]) == 2 and all(len(p) == 1 for p in d["per_seed"])
    assert d["tied_layers"] == [d["oracle_layer"]] and "one seed" in d["tied_rule"]
    assert set(d["selectors"]) == set(SELECTORS)
    for name in SELECTORS:
        assert {"layer", "score", "regret", "spearman"} <= set(d["selectors"][name])
    assert d["selectors"]["top"]["layer"] == 6 and d["selectors"]["top"]["spearman"] is None
    assert d["selectors"]["nu_plateau"]["spearman"] is None and d["selectors"]["nu_plateau"]["scores"] is None
    assert len(d["selectors"]["nu_argmin"]["scores"]) == 2  # per layer of the sweep, what its Spearman reads
    i = d["layers"].index(d["oracle_layer"])
    args = d["train_args"][i]
    assert args[args.index("--lr") + 1] == repr(d["lr"][i])
    assert args[args.index("--device") + 1] == "cpu" and args[args.index("--dtype") + 1] == "float32"
    assert main(["train", *args, "--cache-dir", str(tmp_path / "c"), "--json", str(again)]) == 0
    run = json.loads(again.read_text())
    assert abs(run["eval"][d["metric"]] - d["per_seed"][i][0]) <= 1 / run["eval_examples"] + 1e-9
    assert main([*argv, "--json", str(out)]) == 0  # rerun: every run from the cache, the same numbers
    assert json.loads(out.read_text())["per_seed"] == d["per_seed"]
    # the model, its prefix states and the run records live under --cache-dir; the default cache is never touched
    assert set(model_roots) == {str(tmp_path / "c")} and not (tmp_path / "elsewhere").exists()


def test_stop_ends_the_run_in_flight_caches_nothing_and_the_worker_says_stopped(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import analysis.training.run as training_run
    from analysis.data.sampling import SampleConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.store.cache import DiskCache
    from analysis.sweep.run import SweepStopped, one_run, run_config
    from analysis.sweep.worker import run_sweep_job
    from analysis.training.monitor import RunMonitor

    cfg, sc = AnalysisConfig(sampling=SampleConfig(n=20)), SweepConfig(layers=(1, 2), seeds=(0,))
    tc, cache = run_config(cfg, sc, 1, 0, 1e-3, False), DiskCache(tmp_path)
    with pytest.raises(SweepStopped):  # asked before the run: nothing trains
        one_run(tc, cache, should_stop=lambda: True)
    calls, seen = [0], {}

    def stop_after_first_check() -> bool:
        calls[0] += 1
        return calls[0] > 1

    def train_until_stopped(tc, monitor, loader=None, cache=None):
        seen["run_sees_stop"] = monitor.should_stop()  # the run's own monitor follows the sweep's Stop
        return SimpleNamespace(result=SimpleNamespace(stopped=True))

    monkeypatch.setattr(training_run, "train", train_until_stopped)
    with pytest.raises(SweepStopped):
        one_run(tc, cache, should_stop=stop_after_first_check)
    assert seen["run_sees_stop"] and not (tmp_path / "runs").exists()  # a stopped run is never cached
    monitor = RunMonitor()
    monitor.request_stop()
    run_sweep_job(cfg, sc, monitor, cache=cache)
    assert monitor.snapshot()["status"] == "stopped"
