"""The time estimate before a run: the cost-model path, the probe, the one-line text, and ``train``'s line."""

import json

import pytest
import torch

from analysis.errors import VariscopeError
from analysis.training import Selection, build_classifier
from analysis.training.cost import cost
from analysis.training.estimate import (
    Estimate,
    OneOffPass,
    combine,
    duration,
    evaluations,
    from_costs,
    known_rate,
    measure_rate,
    probe,
)


@pytest.fixture(scope="module")
def tiny():
    """A random 3-block BERT (d = 32): the cost model needs its parameter counts, nothing trained."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
    return BertModel(cfg).eval()


def _batch(n=4, t=12, labels=True):
    g = torch.Generator().manual_seed(1)
    b = {"input_ids": torch.randint(5, 100, (n, t), generator=g), "attention_mask": torch.ones(n, t, dtype=torch.long)}
    if labels:
        b["labels"] = torch.tensor([i % 2 for i in range(n)])
    return b


def test_more_steps_take_proportionally_more_training_time(tiny):
    costs = cost(tiny, Selection(2, (2,)), seq_len=16, num_labels=2)
    kw = dict(batch_size=8, eval_n=50, rate=2e9)
    a = from_costs(costs, steps=10, eval_every=10, **kw)
    b = from_costs(costs, steps=30, eval_every=30, **kw)
    assert a.method == b.method == "cost model" and a.per_step == pytest.approx(b.per_step)
    assert b.parts["train"] == pytest.approx(3 * a.parts["train"])
    assert a.per_step == pytest.approx(costs["flops_per_example"] * 8 / 2e9)
    assert b.parts["eval"] == pytest.approx(a.parts["eval"])  # one evaluation each
    assert b.seconds - a.seconds == pytest.approx(2 * a.parts["train"])
    assert a.seconds == pytest.approx(sum(a.parts.values()))
    # twice the rate: half the time; a per-step time (a probe's) replaces the cost model's
    assert from_costs(costs, steps=10, eval_every=10, **{**kw, "rate": 4e9}).seconds == pytest.approx(a.seconds / 2)
    p = from_costs(costs, steps=10, eval_every=10, per_step=0.5, **kw)
    assert p.method == "probe" and p.parts["train"] == pytest.approx(5.0) and p.parts["eval"] == a.parts["eval"]


def test_evaluations_every_k_steps_and_at_the_end(tiny):
    assert evaluations(10, 5) == 2 and evaluations(10, 3) == 4 and evaluations(1, 1) == 1
    costs = cost(tiny, Selection(2, (2,)), seq_len=16, num_labels=2)
    one = from_costs(costs, steps=12, eval_every=12, batch_size=4, eval_n=40, rate=1e9)
    four = from_costs(costs, steps=12, eval_every=3, batch_size=4, eval_n=40, rate=1e9)
    assert four.parts["eval"] == pytest.approx(4 * one.parts["eval"]) and four.parts["train"] == one.parts["train"]
    # two processes evaluate half the held-out texts each and take half the batch per step
    two = from_costs(costs, steps=12, eval_every=3, batch_size=4, eval_n=40, rate=1e9, world_size=2)
    assert two.seconds == pytest.approx(four.seconds / 2)


def test_a_one_off_pass_adds_its_forward_time(tiny):
    costs = cost(tiny, Selection(3, (3,)), seq_len=16, num_labels=2)
    kw = dict(steps=20, batch_size=8, eval_n=50, rate=1e9)
    plain = from_costs(costs, **kw)
    prefix = OneOffPass(texts=600, blocks=2, what="frozen prefix")
    with_pass = from_costs(costs, one_off=[prefix], **kw)
    expected = 600 * sum(costs["block_forward_flops"][:2]) / 1e9
    assert with_pass.parts["frozen prefix"] == pytest.approx(expected) and expected > 0
    assert with_pass.seconds == pytest.approx(plain.seconds + expected)
    assert with_pass.parts["train"] == plain.parts["train"]
    with pytest.raises(VariscopeError, match="rate must be positive"):
        from_costs(costs, rate=0.0, **{k: v for k, v in kw.items() if k != "rate"})


def test_a_plan_adds_its_runs():
    a = Estimate(100.0, 1.0, 80, {"train": 80.0, "eval": 20.0}, "cost model", "x")
    b = Estimate(50.0, 0.5, 60, {"train": 30.0, "ν curve": 20.0}, "cost model", "y")
    c = combine([a, b], "cost model, 2 runs")
    assert c.seconds == 150.0 and c.steps == 140 and c.parts == {"train": 110.0, "eval": 20.0, "ν curve": 20.0}
    assert c.per_step == pytest.approx(110 / 140) and c.method == "cost model" and c.how == "cost model, 2 runs"


def test_the_estimate_reads_as_one_line():
    e = Estimate(200.0, 1.3, 150, {"train": 190.0, "eval": 10.0}, "probe", "probe of 3 steps")
    assert e.text() == "about 3 min 20 s on this machine (probe of 3 steps)"
    assert e.to_dict()["text"] == e.text() and e.to_dict()["parts"]["eval"] == 10.0
    cases = {0.2: "1 s", 7.4: "7 s", 43: "45 s", 58: "1 min", 61: "1 min", 125: "2 min 10 s"}
    cases |= {3599: "1 h", 7800: "2 h 10 min"}
    assert {s: duration(s) for s in cases} == cases


def test_the_rate_is_measured_once_per_key(tiny):
    calls = []
    hook = tiny.encoder.layer[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        key = ("tiny-fingerprint", "cpu", "float32")
        assert known_rate(key) is None
        r = measure_rate(tiny, _batch(labels=False), key)
        assert r > 0 and known_rate(key) == r and len(calls) == 2  # a warm-up pass and a timed one
        assert measure_rate(tiny, _batch(labels=False), key) == r and len(calls) == 2  # kept, not measured again
    finally:
        hook.remove()


def test_the_probe_leaves_the_model_and_the_random_state_as_they_were(tiny):
    model = build_classifier(tiny, Selection(2, (1, 2)), num_labels=2)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    seconds = probe(model, _batch(), warmup=1, steps=2)
    assert seconds > 0 and model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())


@pytest.mark.slow  # a training run
def test_train_prints_the_estimate_before_the_first_step(tmp_path):
    from conftest import run_cli

    log = tmp_path / "live.jsonl"
    r = run_cli(
        *("train", "--task", "rotten_tomatoes", "--num-texts", 64, "--max-length", 16, "--train-batch", 8),
        *("--classifier-layer", 2, "--tune-layers", 2, "--steps", 3, "--eval-n", 20, "--device", "cpu"),
        *("--log", log),
        cache_dir=tmp_path / "c",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(l for l in r.stderr.replace("\r", "\n").splitlines() if "on this machine" in l)
    assert line.startswith("training custom: ℓ*=2, tune 2 for 3 steps: about ") and "(probe of 3 steps)" in line
    events = [json.loads(l) for l in log.read_text().splitlines()]
    first = events[0]["estimate"]  # the first line of the live log, before any step's
    assert first["steps"] == 3 and first["method"] == "probe" and first["seconds"] > 0 and first["text"] in line
    assert set(first["parts"]) == {"train", "eval"} and [e["step"] for e in events if "loss" in e] == [1, 2, 3]


def test_a_reproduction_plan_is_estimated_by_the_same_estimator():
    from dataclasses import replace

    from analysis.reproduce.config import QUICK
    from analysis.reproduce.runs import plan_estimate

    rc = replace(QUICK, models=("minilm",), n_train=120, eval_n=40, analysis_n=100, device="cpu")
    est = plan_estimate(rc)  # full, then variability and top for k = 1, 2: five runs of one seed
    assert est.steps == 5 * rc.steps and "; 5 training runs" in est.how and est.method == "cost model"
    assert "in the cache counted too" in est.how and "runs left" in est.how  # cached runs are counted: said
    # the runs that tune blocks above the first read the frozen prefix once per text (the prefix cache is on)
    assert set(est.parts) == {"train", "eval", "ν curves", "frozen-prefix pass"} and est.text().startswith("about ")
    longer = plan_estimate(replace(rc, steps=2 * rc.steps))  # the rate is measured once: the same here
    assert longer.parts["train"] == pytest.approx(2 * est.parts["train"])
    assert longer.parts["ν curves"] == pytest.approx(est.parts["ν curves"])
    grid = plan_estimate(replace(rc, lr_grid=(1e-4, 3e-4)))  # two validation runs per strategy before the seeds
    assert grid.steps == 3 * est.steps and "; 15 training runs" in grid.how


def test_runs_that_share_texts_count_the_prefix_once_and_chain_the_next_block(tiny):
    from types import SimpleNamespace

    from analysis.training.estimate import _with_prefix

    def run(t):  # k = 1 at layer t: blocks 1..t-1 are the frozen prefix
        return SimpleNamespace(prefix_cache=True, selection=Selection(t, (t,)), eval_n=10)

    seen: set[int] = set()
    c = cost(tiny, Selection(3, (3,)), seq_len=16, num_labels=2)
    first = _with_prefix(tiny, run(3), c, 16, 50, seen)[1]
    again = _with_prefix(tiny, run(3), c, 16, 50, seen)[1]
    higher = _with_prefix(tiny, run(4), c, 16, 50, seen)[1]
    assert [(p.texts, p.blocks) for p in first] == [(60, 2)] and again == []
    assert [(p.blocks, p.what) for p in higher] == [(1, "frozen-prefix pass chained from block 3")]
    assert [p.blocks for p in _with_prefix(tiny, run(3), c, 16, 50)[1]] == [2]  # no shared process: the whole prefix


def test_with_the_prefix_cache_an_evaluation_runs_only_the_blocks_above_the_prefix(tiny):
    from types import SimpleNamespace

    from analysis.training.estimate import _with_prefix

    plain = cost(tiny, Selection(3, (3,)), seq_len=16, num_labels=2)
    run = SimpleNamespace(prefix_cache=True, selection=Selection(3, (3,)), eval_n=50)
    cached, _ = _with_prefix(tiny, run, plain, 16, 50)
    kw = dict(steps=10, eval_every=5, batch_size=8, eval_n=50, rate=1e9)
    fwd = plain["block_forward_flops"]
    # the held-out texts' states entering block 3 come from the one-off pass: two evaluations of block 3 and the head
    want = 2 * 50 * (fwd[2] + plain["head_forward_flops"]) / 1e9
    assert from_costs(cached, **kw).parts["eval"] == pytest.approx(want)
    assert from_costs(plain, **kw).parts["eval"] == pytest.approx(want + 2 * 50 * (fwd[0] + fwd[1]) / 1e9)


def test_the_rate_and_the_probe_run_under_the_cpu_autocast_the_run_trains_under():
    from analysis.training.estimate import _autocast

    x = torch.ones(4, 4)
    with _autocast("cpu", "bfloat16"):
        assert (x @ x).dtype == torch.bfloat16  # "autocast-bfloat16" on the CPU: the matmuls run in bfloat16
    with _autocast("cpu", None):
        assert (x @ x).dtype == torch.float32


def test_a_batch_is_costed_at_its_longest_text():
    from analysis.training.estimate import padded_length

    mixed = [10] * 50 + [100] * 50
    assert padded_length(mixed, 16) == pytest.approx(100, abs=0.5)  # a batch of 16 without a long text is rare
    assert padded_length(mixed, 1) == pytest.approx(55, abs=8)  # one text a batch: the mean
    assert padded_length([7, 7, 7], 16) == 7 and padded_length([], 16) == 0.0
    assert padded_length(mixed, 4) == padded_length(mixed, 4)  # seeded
