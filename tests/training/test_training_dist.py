"""Training on several processes: torchrun and accelerate launch (gloo on the CPU), rank 0 alone writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.distributed import check_launch, dist_timeout, launch_env, lost_peer, on_rank0
from analysis.errors import VariscopeError
from analysis.training import Selection, build_classifier, freeze_unused
from conftest import ROOT

BIN = Path(sys.executable).parent
HELPER = "tests/training/_torchrun_train.py"
N_EVAL = 37  # odd, below one evaluation batch: the second process's share is padded, and must not count twice
TINY = [
    "train",
    "--task",
    "rotten_tomatoes",
    "--num-texts",
    "64",
    "--max-length",
    "16",
    "--train-batch",
    "8",
    "--eval-n",
    str(N_EVAL),
    "--device",
    "cpu",
]
_LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_SIZE",
    "MASTER_ADDR",
    "ACCELERATE_USE_CPU",
)


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    return {**env, "VARISCOPE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), **extra}


def _run(cmd, tmp_path, **extra):
    r = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=600)
    r.lines = r.stderr.replace("\r", "\n").splitlines()  # tqdm redraws with \r
    return r


def _torchrun(tmp_path, *args, nproc=2):
    return _run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(nproc), *args], tmp_path)


def _errors(r) -> list[str]:
    return [l[l.index("error:") :] for l in r.lines if "error:" in l]


def _quiet(r) -> None:
    """Nothing on stderr but torchrun's own notes, rank 0's progress bar and (on failure) torchrun's report."""
    noise = [l for l in r.lines if l.strip() and not l.startswith(("W1", "I1", "training:")) and "step/s" not in l]
    assert not [l for l in noise if "arn" in l or "[rank" in l], noise


# ---------------------------------------------------------------- fast


def test_launch_env_and_the_accelerate_cpu_trap(monkeypatch):
    for k in _LAUNCH_VARS:
        monkeypatch.delenv(k, raising=False)
    assert launch_env() == (0, 1)
    check_launch()  # one process, no launcher
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    check_launch()  # accelerate launch --cpu with one process: MASTER_ADDR is not set
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # --num_processes 2: still one process
    with pytest.raises(VariscopeError, match="started a single process"):
        check_launch()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")  # the MPI launch that accelerate means by it
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    assert launch_env() == (1, 2)
    check_launch()
    monkeypatch.setenv("WORLD_SIZE", "x")
    with pytest.raises(VariscopeError, match="not a process number"):
        launch_env()


def test_the_others_wait_hours_for_rank_0(monkeypatch):
    monkeypatch.delenv("VARISCOPE_DIST_TIMEOUT", raising=False)
    assert dist_timeout() == 3 * 3600  # curve --stream and train under torchrun wait alike
    monkeypatch.setenv("VARISCOPE_DIST_TIMEOUT", "60")
    assert dist_timeout() == 60
    monkeypatch.setenv("VARISCOPE_DIST_TIMEOUT", "0")
    with pytest.raises(VariscopeError, match="positive number of seconds"):
        dist_timeout()


def test_on_rank0_alone_and_lost_peers():
    assert on_rank0(lambda: 7, 0, 1) == 7
    with pytest.raises(VariscopeError, match="bad"):
        on_rank0(lambda: (_ for _ in ()).throw(VariscopeError("bad")), 0, 1)
    assert lost_peer(RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1"))
    assert not lost_peer(RuntimeError("injected failure")) and not lost_peer(ValueError("Broken pipe"))
    assert not lost_peer(torch.distributed.DistBackendError("[gloo] Timed out waiting 1800000ms for recv"))


def test_a_trainable_parameter_the_loss_never_reaches_is_frozen(minilm):
    """A BERT pooler that requires grad is unused by the classifier: DDP without find_unused_parameters
    would stop at the second step. freeze_unused freezes it; the real selections have none."""
    base, tok = minilm
    enc = tok(["a good film", "bad"], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    batch = {k: enc[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")}
    batch["labels"] = torch.tensor([0, 1])
    for sel in (Selection(2, (1, 2)), Selection(6, (1, 2, 3, 4, 5, 6), tune_embeddings=True)):
        model = build_classifier(base, sel, 2)
        state = torch.random.get_rng_state()
        assert freeze_unused(model, batch) == [] and model.training
        assert torch.equal(state, torch.random.get_rng_state())  # eval mode: no dropout drew numbers
        assert all(p.grad is None for p in model.parameters())
    model = build_classifier(base, Selection(6, (6,)), 2)
    for p in model.encoder.pooler.parameters():
        p.requires_grad_(True)
    assert freeze_unused(model, batch) == ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"]
    assert not any(p.requires_grad for p in model.encoder.pooler.parameters())


@pytest.mark.parametrize("rank", [0, 1])
def test_a_batch_that_the_processes_cannot_share_is_refused_once(tmp_path, rank):
    """--train-batch is the global batch: 7 texts per step cannot be split over 2 processes."""
    cmd = [sys.executable, "-m", "analysis", *TINY, "--train-batch", "7", "--classifier-layer", "2"]
    r = _run(cmd, tmp_path, RANK=str(rank), WORLD_SIZE="2")
    assert r.returncode == 2
    expected = ["error: --train-batch 7 is the batch of all 2 processes together: it must be a multiple of 2"]
    assert _errors(r) == (expected if rank == 0 else [])  # every process refuses it; rank 0 alone says so


# ---------------------------------------------------------------- slow: real launches


@pytest.mark.slow
def test_torchrun_two_processes_take_the_same_steps_as_one(tmp_path):
    """Global batch 8 = 2 × 4: the same examples per optimizer step as one process with batch 8 reading the
    two processes' shards in their order (``--shards 2``), gradients averaged by DDP; 10 steps cross an
    epoch (8 steps of 64 texts), where the shards are reshuffled. Without dropout (the only randomness that
    differs per process) the losses agree up to the order of float sums. The evaluation counts the 37
    held-out texts once."""
    flags = [*TINY, "--classifier-layer", "2", "--tune-layers", "1,2", "--steps", "10", "--lr", "1e-3"]
    one_json, two_json = tmp_path / "one.json", tmp_path / "two.json"
    one = _run([sys.executable, HELPER, "--no-dropout", "--shards", "2", *flags, "--json", str(one_json)], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    log, save = tmp_path / "live.jsonl", tmp_path / "saved"
    two = _torchrun(
        tmp_path, HELPER, "--no-dropout", *flags, "--json", str(two_json), "--log-file", str(log), "--save", str(save)
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one_json.read_text()), json.loads(two_json.read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2) and a["batch_size"] == b["batch_size"] == 8
    assert a["steps"] == b["steps"] == 10 and len(b["history"]) == 10
    assert a["n_eval"] == b["n_eval"] == a["eval_examples"] == b["eval_examples"] == N_EVAL
    np.testing.assert_allclose([h["loss"] for h in b["history"]], [h["loss"] for h in a["history"]], rtol=1e-4)
    np.testing.assert_allclose(b["eval"]["accuracy"], a["eval"]["accuracy"], atol=1.5 / N_EVAL)
    # rank 0 alone wrote and printed: one summary line, each logged step once, one saved run
    # one summary line (and the line saying where the held-out texts came from)
    summary = [l for l in two.stdout.splitlines() if l.strip() and "held-out texts from" not in l]
    assert len(summary) == 1 and "on 2 processes (batch 8 = 2 × 4)" in summary[0] and f"({N_EVAL} texts)" in summary[0]
    events = [json.loads(l) for l in log.read_text().splitlines()]
    assert [e["step"] for e in events if "loss" in e] == list(range(1, 11))
    assert sum(1 for e in events if e.get("final")) == 1
    assert json.loads((save / "result.json").read_text())["world_size"] == 2
    assert (save / "trainable.safetensors").exists() and _errors(two) == []
    _quiet(two)


@pytest.mark.slow
def test_torchrun_each_process_caches_only_its_own_rows(tmp_path):
    """Frozen prefix of blocks 1-2 (tuning block 3), 2 processes, 10 steps (an epoch is 8): each process's
    prefix states hold its 32 training texts (disjoint shards, all 64 together) and the 86 of 150 held-out
    texts its evaluations read; the run with the cache and the one without log the same losses."""
    flags = [*TINY, "--eval-n", "150", "--classifier-layer", "3", "--tune-layers", "3", "--steps", "10"]
    flags += ["--lr", "1e-3"]
    cached_json, plain_json, report = tmp_path / "cached.json", tmp_path / "plain.json", tmp_path / "report"
    report.mkdir()
    cached = _torchrun(tmp_path, HELPER, "--report-prefix", str(report), *flags, "--json", str(cached_json))
    assert cached.returncode == 0, cached.stderr[-3000:]
    plain = _torchrun(tmp_path, "-m", "analysis", *flags, "--no-prefix-cache", "--json", str(plain_json))
    assert plain.returncode == 0, plain.stderr[-3000:]
    held = [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)]
    assert [h["train"]["texts"] for h in held] == [len(h["train"]["ids"]) for h in held] == [32, 32]
    assert set(held[0]["train"]["ids"]) | set(held[1]["train"]["ids"]) == set(range(64))
    assert [h["eval"]["texts"] for h in held] == [86, 86]
    assert set(held[0]["eval"]["ids"]) | set(held[1]["eval"]["ids"]) == set(range(150))
    c, p = json.loads(cached_json.read_text()), json.loads(plain_json.read_text())
    assert c["prefix_cache"]["used"] and c["prefix_cache"]["block"] == 3 and not p["prefix_cache"]["used"]
    assert c["prefix_cache"]["rows_per_rank"] == {"train": [32, 32], "eval": [86, 86]}
    lc, lp = [h["loss"] for h in c["history"]], [h["loss"] for h in p["history"]]
    assert len(lc) == len(lp) == 10 and not np.allclose(lc, lc[0])  # it trains
    np.testing.assert_allclose(lc, lp, rtol=1e-4)
    assert c["eval"] == p["eval"] and c["eval_examples"] == p["eval_examples"] == 150


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["full", "variability"])
def test_torchrun_full_and_variability_strategies(tmp_path, strategy):
    """Embeddings and every block trainable (full), the curve computed and cached by rank 0 (variability,
    with ν re-measured after training): DDP without find_unused_parameters raises nothing."""
    out = tmp_path / "r.json"
    extra = ["--remeasure"] if strategy == "variability" else []
    flags = [*TINY, "--strategy", strategy, "--k", "1", "--steps", "2", "--json", str(out), *extra]
    r = _torchrun(tmp_path, "-m", "analysis", *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["world_size"] == 2 and d["steps"] == 2 and d["eval_examples"] == N_EVAL
    assert d["tune_embeddings"] == (strategy == "full") and d["strategy"] == strategy
    assert ("variability_before_after" in d) == ("layer_chosen_on" in d) == (strategy == "variability")
    assert strategy == "full" or d["variability_before_after"]["representation"] == d["layer_chosen_on"]
    assert "unused parameters" not in r.stderr and _errors(r) == []
    _quiet(r)


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_a_failing_process_ends_the_run_with_one_error_and_no_exports(tmp_path, rank):
    out, save = tmp_path / "r.json", tmp_path / "saved"
    flags = [*TINY, "--classifier-layer", "2", "--steps", "5", "--json", str(out), "--save", str(save)]
    r = _torchrun(tmp_path, HELPER, "--fail-rank", str(rank), *flags)
    assert r.returncode != 0
    assert _errors(r) == [f"error: process {rank} of 2: RuntimeError: injected failure"], r.stderr[-3000:]
    assert not out.exists() and not save.exists() and not list(tmp_path.glob(".saved.staging-*"))
    assert r.stdout.strip() == ""


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["output", "column"])
def test_bad_input_is_reported_once_before_any_training(tmp_path, bad):
    """An output rank 0 cannot write (checked before the processes meet) or a missing column (found by
    rank 0, which loads the data first and tells the others): one error line, no process trains."""
    (tmp_path / "file").write_text("")
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(20)))
    flags = ["train", "--classifier-layer", "2", "--steps", "2", "--device", "cpu"]
    if bad == "output":
        flags += ["--task", "rotten_tomatoes", "--json", str(tmp_path / "file" / "r.json")]
    else:
        flags += ["--data", str(tmp_path / "d.csv"), "--text-col", "body", "--label-col", "label"]
    r = _torchrun(tmp_path, "-m", "analysis", *flags)
    assert r.returncode != 0 and r.stdout.strip() == "" and "note:" not in r.stderr
    (e,) = _errors(r)
    if bad == "output":
        assert e.startswith("error: cannot write --json") and e.endswith("is a file, not a folder")
    else:
        assert e.startswith("error: text column 'body' not found"), e


@pytest.mark.slow
def test_accelerate_launch(tmp_path):
    """accelerate 1.x starts several CPU processes with --multi_gpu (torchrun underneath, gloo since the
    Trainer is told use_cpu); --cpu with --num_processes 2 starts one process, which is refused.
    A config file of the test's own keeps the user's accelerate default config out of it."""
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: NO\nmixed_precision: 'no'\n")
    acc = [str(BIN / "accelerate"), "launch", "--config_file", str(config), "--num_machines", "1"]
    acc += ["--mixed_precision", "no", "--dynamo_backend", "no", "--num_processes", "2"]
    out = tmp_path / "r.json"
    r = _run([*acc, "--multi_gpu", "--main_process_port", "0", "-m", "analysis", *TINY, "--classifier-layer", "2",
              "--steps", "2", "--json", str(out)], tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    printed = [l for l in r.stdout.splitlines() if l and "held-out texts from" not in l]
    assert d["world_size"] == 2 and d["eval_examples"] == N_EVAL and len(printed) == 1
    cpu = _run([*acc, "--cpu", "-m", "analysis", *TINY, "--classifier-layer", "2", "--steps", "2"], tmp_path)
    assert cpu.returncode != 0 and [e.split(";")[0] for e in _errors(cpu)] == [
        "error: accelerate launch --cpu started a single process (it starts several CPU processes only through MPI)"
    ]
