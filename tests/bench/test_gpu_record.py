"""``bench --gpu-record`` (``make gpu-record``): refuses at once without a GPU; its plan, dry-run on the CPU."""

import json
import subprocess
import sys

import numpy as np
import pytest

from analysis.cli import main
from conftest import ROOT

slow = pytest.mark.slow


def _no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")


def _outputs(tmp_path):
    out = tmp_path / "out"
    return out, ["--json", str(out / "gpu.json"), "--doc", str(out / "gpu.md"), "--plots", str(out / "img")]


def test_gpu_record_without_a_gpu_prints_versions_then_one_error_line(tmp_path, capsys, monkeypatch):
    import platform

    from analysis.bench.gpu_record import CPU_ENV

    _no_gpu()
    monkeypatch.delenv(CPU_ENV, raising=False)
    out, flags = _outputs(tmp_path)
    assert main(["bench", "--gpu-record", *flags]) == 2
    got = capsys.readouterr()
    assert got.err.startswith("error: no CUDA GPU here") and got.err.count("\n") == 1
    assert f"python {platform.python_version()}" in got.out and "no CUDA device" in got.out
    assert not out.exists()  # refused before anything was built or written


@slow  # a fresh interpreter imports torch
def test_gpu_record_command_exits_2_with_one_stderr_line_without_a_gpu(tmp_path):
    _no_gpu()
    _, flags = _outputs(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    p = subprocess.run(
        [sys.executable, "-m", "analysis", "bench", "--gpu-record", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no CUDA GPU" in p.stderr, p.stderr
    assert "versions" in p.stdout and "torch" in p.stdout


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--model", "mpnet"], "drop --model"),
        (["--quick", "--device", "cpu"], "drop --device, --quick"),
        (["--only", "metric"], "the GPU record has no section(s) metric"),
        (["--reps", "0"], "--reps must be at least 1"),
    ],
)
def test_gpu_record_refuses_flags_it_does_not_take(tmp_path, capsys, flags, message):
    out, outputs = _outputs(tmp_path)
    assert main(["bench", "--gpu-record", *flags, *outputs]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_synthetic_texts_are_as_long_as_rotten_tomatoes_snippets_and_balanced(tmp_path):
    from analysis.bench import synthetic

    vocab = synthetic.words(3000)
    assert len(set(vocab)) == 3000
    texts, labels = synthetic.texts(1000, vocab, seed=1)
    again, _ = synthetic.texts(1000, vocab, seed=1)
    assert texts == again and np.bincount(labels).tolist() == [500, 500]
    tok = synthetic.tokenizer(str(tmp_path / "tok"), vocab)
    lengths = [len(x) for x in tok(texts)["input_ids"]]
    assert 24 <= np.mean(lengths) <= 32 and min(lengths) >= 5 and max(lengths) <= 64  # RT: 27 BERT tokens
    assert tok.unk_token_id not in {i for x in tok(texts[:50])["input_ids"] for i in x}  # every word is known


def test_a_section_past_its_time_box_is_noted_and_the_record_goes_on(monkeypatch):
    from analysis.bench import gpu_record

    monkeypatch.setenv(gpu_record.CPU_ENV, "1")
    monkeypatch.setattr(gpu_record, "TINY_BUDGET_S", 0.01)  # no interpreter starts in 10 ms
    res = gpu_record.record(gpu_record.RecordSettings(only=("cards", "training")), "bench --gpu-record")
    assert res["skipped"] == ["cards: stopped at its time box of 0 s", "training: stopped at its time box of 0 s"]
    assert "cards_vs_forward" not in res and "section_seconds" not in res
    assert res["gpu_record"]["tiny_cpu_test"] and res["machine"]["device"] == "cpu"


@slow  # five fresh processes, each loading tiny models
def test_gpu_record_plan_dry_run_on_the_cpu_writes_every_gpu_key(tmp_path, monkeypatch):
    from analysis.bench import gpu_record, streaming

    monkeypatch.setenv(gpu_record.CPU_ENV, "1")
    out, flags = _outputs(tmp_path)
    assert main(["bench", "--gpu-record", *flags]) == 0
    res = json.loads((out / "gpu.json").read_text())
    assert "skipped" not in res, res.get("skipped")
    assert set(res["section_seconds"]) == set(gpu_record.BUDGET_S)
    for key in (
        "curve_vs_floor",
        "paper_algorithm_vs_curve",
        "encoder_curve_texts_per_s",
        "stream_vs_states_throughput",
        "cards_vs_forward",
        "train_speedup_vs_full",
    ):
        assert res[key] > 0, key
    assert set(res["curve"]) == {"random BERT 2x32", "random Gemma-3 2x32"}
    assert res["curve"]["random Gemma-3 2x32"]["layers"] == 2 and res["encoder"]["texts"] == "synthetic"
    assert res["stream"]["n"] == streaming.QUICK_N and res["stream"]["max_rel_diff_nu"] < 1e-6
    g = res["gpu_record"]
    assert g["versions"]["torch"] and g["tiny_cpu_test"] and g["quick_sections"] == list(gpu_record.BUDGET_S)
    text = (out / "gpu.md").read_text()
    assert "`encoder_curve_texts_per_s`" in text and "`cards_vs_forward`" in text and "GPU record" in text
    assert "A test run on the CPU with tiny models, not a record." in text
