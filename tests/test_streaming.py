"""ν from running statistics (analysis/streaming.py) equals ν on the stored states."""

import numpy as np
import pytest

from analysis.errors import VariscopeError
from analysis.streaming import LayerStats
from analysis.variability import variability


def _data(C, sizes, d=16, L1=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), sizes)
    rng.shuffle(labels)
    centres = rng.normal(size=(L1, C, d)) * 2.0 + 5.0  # an offset, as in real hidden states
    states = centres[:, labels] + rng.normal(size=(L1, len(labels), d)) * rng.uniform(0.5, 2.0, size=d)
    return states.astype(np.float32), labels, np.bincount(labels, minlength=C)


def _stream(states, labels, sizes, cuts, **kw):
    st = LayerStats(states.shape[0], states.shape[2], sizes, **kw)
    bounds = [0, *cuts, len(labels)]
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        st.update(states[:, s:e], labels[s:e], np.arange(s, e))
    return st


@pytest.mark.parametrize(
    ("C", "sizes"),
    [(2, [30, 30]), (5, [3, 40, 7, 12, 25]), (20, [2 + 3 * (i % 4) for i in range(20)]), (2, [5, 95])],
)
@pytest.mark.parametrize("weighting", ["equal", "size"])
def test_stats_match_states(C, sizes, weighting):
    states, labels, counts = _data(C, sizes)
    n = len(labels)
    want = [variability(states[l], labels, weighting=weighting) for l in range(len(states))]
    for cuts in ([], [1], [n // 3, n // 2, n - 1], list(range(7, n, 7))):
        got = _stream(states, labels, counts, cuts, weighting=weighting).variability()
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_merge_equals_one_pass():
    states, labels, counts = _data(5, [10, 20, 8, 9, 13])
    n = len(labels)
    one = _stream(states, labels, counts, [17, 40])
    a = LayerStats(3, 16, counts)
    a.update(states[:, : n // 2], labels[: n // 2], np.arange(n // 2))
    b = LayerStats(3, 16, counts)
    b.update(states[:, n // 2 :], labels[n // 2 :], np.arange(n // 2, n))
    with pytest.raises(VariscopeError, match="rows per class"):
        a.variability()  # half the rows: refused, not a wrong ν
    merged = a.merge(b)
    np.testing.assert_allclose(merged.variability(), one.variability(), rtol=1e-12)
    c = LayerStats(3, 16, counts)
    c.load_flat(a.flat())
    np.testing.assert_allclose(c.variability(), one.variability(), rtol=1e-12)


def test_state_sample_size_and_seed():
    states, labels, counts = _data(3, [40, 30, 30])
    runs = [_stream(states, labels, counts, cuts, keep=25, seed=7).sample for cuts in ([], [5, 50], [33])]
    for s in runs:
        assert s.states is not None and s.states.shape == (3, 25, 16)
        assert len(set(s.index.tolist())) == 25
        np.testing.assert_array_equal(s.index, runs[0].index)  # the same rows whatever the batches
        np.testing.assert_array_equal(s.states, states[:, s.index])  # the same rows in every layer
        np.testing.assert_array_equal(s.labels, labels[s.index])
    other = _stream(states, labels, counts, [], keep=25, seed=8).sample
    assert not np.array_equal(other.index, runs[0].index)
    small = _stream(states, labels, counts, [10], keep=500).sample
    assert small.states is not None and small.states.shape[1] == 100


def test_refusals():
    with pytest.raises(VariscopeError, match="at least 2"):
        LayerStats(2, 4, [5, 1])
    st = LayerStats(2, 4, [3, 3])
    with pytest.raises(VariscopeError, match="shape"):
        st.update(np.zeros((2, 3, 5)), np.zeros(3, dtype=int))
    with pytest.raises(VariscopeError, match="class indices"):
        st.update(np.zeros((2, 3, 4)), np.array([0, 1, 2]))
    X = np.ones((2, 6, 4))
    X[1, 2, 0] = np.nan
    st.update(X, np.array([0, 1, 0, 1, 0, 1]))
    with pytest.raises(VariscopeError, match="^layer 1: the hidden states contain NaN"):
        st.variability()


def _cfg(n, task="bbc_news"):
    from analysis import AnalysisConfig, SampleConfig, TaskConfig

    return AnalysisConfig(model="minilm", task=TaskConfig(task), sampling=SampleConfig(n=n, seed=3), batch_size=8)


@pytest.mark.slow
def test_stream_curve_equals_states_path(minilm):
    """One process runs the same batches as the states path, so the float32 states are identical and
    only the float64 algebra differs (summation order, W − Σ π m mᵀ): agreement to 1e-9, not just 1e-6."""
    from analysis import compute_curve
    from analysis.streamcurve import stream_curve

    cfg = _cfg(30)
    curve, st = compute_curve(cfg, use_cache=False)
    res = stream_curve(cfg, keep=8)
    np.testing.assert_allclose(res.curve.variability, curve.variability, rtol=1e-9)
    assert res.curve.counts == curve.counts and res.n == 30 and res.to_dict()["mode"] == "stream"
    s = res.stats.sample
    assert s.states is not None and s.states.shape == (7, 8, 384)
    np.testing.assert_array_equal(s.states, st.states[:, s.index])


@pytest.mark.slow
def test_stream_shards_merge_to_the_whole(minilm):
    """Rows i % 3 == rank, merged: every row once. The shards' batches are padded differently, so the
    float32 states differ from the one-process run in the last bits (≈1e-7): ν agrees to 1e-5."""
    from analysis.streamcurve import shard, stream_curve, stream_stats

    cfg = _cfg(31, task="rotten_tomatoes")
    whole = stream_curve(cfg)
    parts = [stream_stats(cfg, rank=k, world_size=3) for k in range(3)]
    assert [p.rows for p in parts] == [11, 10, 10]
    assert sorted(np.concatenate([shard(31, k, 3) for k in range(3)]).tolist()) == list(range(31))
    merged = parts[0].stats.merge(parts[1].stats).merge(parts[2].stats)
    np.testing.assert_allclose(merged.variability(), whole.curve.variability, rtol=1e-5)
    with pytest.raises(VariscopeError, match="every process needs"):
        stream_stats(cfg, rank=0, world_size=40)


def _curve_json(tmp_path, name, *args, launcher=None):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from conftest import ROOT, run_cli

    out = tmp_path / f"{name}.json"
    flags = ["curve", "--task", "rotten_tomatoes", "--seed", "3", "--batch-size", "4", "--json", str(out), *args]
    if launcher is None:
        r = run_cli(*flags, cache_dir=tmp_path / "cache")
    else:
        env = {**__import__("os").environ, "VARISCOPE_CACHE": str(tmp_path / "cache")}
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(launcher), "-m", "analysis", *flags]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    return json.loads(out.read_text())


@pytest.mark.slow
def test_cli_stream_matches_default(tmp_path):
    """Same batches in one process: the float32 states are identical, ν agrees to 1e-9 (float64 algebra only)."""
    states = _curve_json(tmp_path, "states", "--n", "31", "--no-cache")
    stream = _curve_json(tmp_path, "stream", "--stream", "--num-texts", "31")
    assert (states["mode"], states["world_size"]) == ("states", 1)
    assert (stream["mode"], stream["world_size"], stream["n"]) == ("stream", 1, 31)
    assert stream["counts"] == states["counts"] and stream["band"] is None
    np.testing.assert_allclose(stream["variability"], states["variability"], rtol=1e-9)
    assert not (tmp_path / "cache" / "states").exists() or not any((tmp_path / "cache" / "states").iterdir())


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    """Rows i % 2 == rank, statistics summed by all_reduce (gloo). The two shards' batches are padded
    differently from the one-process run, so the float32 states differ in the last bits: ν to 1e-5."""
    one = _curve_json(tmp_path, "one", "--stream", "--num-texts", "31")
    two = _curve_json(tmp_path, "two", "--stream", "--num-texts", "31", launcher=2)
    assert (two["mode"], two["world_size"], two["n"]) == ("stream", 2, 31)
    assert two["counts"] == one["counts"] and sum(two["counts"].values()) == 31
    np.testing.assert_allclose(two["variability"], one["variability"], rtol=1e-5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--keep", "5"], "error: --stream-mode, --keep and --memory-budget go with --stream"),
        (["--stream-mode", "two-pass"], "error: --stream-mode, --keep and --memory-budget go with --stream"),
        (["--stream", "--keep", "-1"], "error: --keep must be a number of states ≥ 0, got -1"),
        (
            ["--stream", "--keep", "0", "--bootstrap", "10"],
            "error: --bootstrap with --stream resamples the state sample: --keep must be above 0",
        ),
        (["--stream", "--memory-budget", "0"], "error: --memory-budget must be a positive number of MB, got 0.0"),
    ],
)
def test_cli_stream_refusals(tmp_path, flags, message):
    from conftest import run_cli

    r = run_cli("curve", *flags, cache_dir=tmp_path / "c")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [message]


@pytest.mark.slow
def test_torchrun_state_sample_is_gathered(tmp_path, minilm):
    """Under torchrun every process ends with the whole world's sample: the same rows as one process."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from analysis.streamcurve import stream_curve
    from conftest import ROOT

    out = tmp_path / "sample.json"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "tests/_torchrun_sample.py", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    two = json.loads(out.read_text())
    assert two["world_size"] == 2 and two["rows"] == 16
    one = stream_curve(_cfg(31, task="rotten_tomatoes"), keep=6)
    s = one.stats.sample
    assert s.states is not None and two["index"] == s.index.tolist()
    np.testing.assert_allclose(np.array(two["states"]), s.states, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["variability"], one.curve.variability, rtol=1e-5)
