import json

import pytest
import torch

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.errors import VariscopeError
from analysis.models.layers import layer_list
from analysis.pipeline import AnalysisConfig
from analysis.training import RunMonitor, Selection, TrainConfig, build_classifier, cost, select, train
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_truncation_keeps_exactly_k_layers_and_never_runs_the_rest(minilm):
    base, tok = minilm
    model = build_classifier(base, Selection(3, (2, 3)), num_labels=2)
    _, kept = layer_list(model.encoder)
    assert len(kept) == 3 and model.encoder.config.num_hidden_layers == 3
    assert len(layer_list(base)[1]) == 6  # the base model is untouched
    calls = []
    for i, blk in enumerate(layer_list(base)[1]):
        blk.register_forward_hook(lambda *a, i=i: calls.append(("base", i)))
    for i, blk in enumerate(kept):
        blk.register_forward_hook(lambda *a, i=i: calls.append(("kept", i)))
    enc = tok(["hello there", "a film"], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    out = model(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        special_tokens_mask=enc["special_tokens_mask"],
        labels=torch.tensor([0, 1]),
    )
    assert out["logits"].shape == (2, 2) and out["loss"].ndim == 0
    assert calls == [("kept", 0), ("kept", 1), ("kept", 2)]
    trainable = {
        n.split(".")[3] if n.startswith("encoder.encoder.layer.") else n.split(".")[0]
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"1", "2", "head"}


def test_lora_trains_only_adapters_and_head(minilm):
    base, _ = minilm
    model = build_classifier(base, Selection(4, (3, 4), adapter="lora"), num_labels=3)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    layers = {int(n.split(".layer.")[1].split(".")[0]) for n in names if "lora_" in n}
    assert layers == {2, 3}  # 0-based blocks of layers 3 and 4


def test_the_head_is_built_beside_the_encoder_not_on_the_cpu(minilm):
    """On a GPU the new head must sit with the encoder before any Trainer moves the model: the probe pass that
    freezes unused parameters runs first (it failed on CUDA with 'mat1 is on cuda:0 … other tensors on cpu')."""
    import copy

    base = copy.deepcopy(minilm[0]).to("meta")  # a device other than the CPU, on any machine
    for sel in (Selection(3, (2, 3)), Selection(3, (3,), adapter="lora")):
        clf = build_classifier(base, sel, 2)
        assert {p.device.type for p in clf.head.parameters()} == {"meta"}
        assert {p.device.type for p in clf.parameters()} == {"meta"}


def test_bad_selections_are_refused(minilm):
    base, _ = minilm
    with pytest.raises(VariscopeError, match="above the classifier layer"):
        build_classifier(base, Selection(3, (3, 4)), 2)
    with pytest.raises(VariscopeError, match="out of range"):
        build_classifier(base, Selection(9, (9,)), 2)


def test_cost_ratios(minilm):
    base, _ = minilm
    full = cost(base, select("full", 6, 2), 40, 2)
    assert full["flops_vs_full"] == pytest.approx(1.0)
    sel = cost(base, Selection(4, (3, 4)), 40, 2)
    top = cost(base, select("top", 6, 2), 40, 2)
    assert 0 < sel["flops_vs_full"] < top["flops_vs_full"] < 1
    assert sel["trainable_params"] == top["trainable_params"]  # same number of blocks
    assert sel["layers_kept"] == 4


CFG = AnalysisConfig(
    task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=480, seed=0), max_length=48, device="cpu"
)


def test_short_run_learns_and_frozen_weights_stay_bit_identical(minilm, tmp_path):
    base, _ = minilm
    log = tmp_path / "live.jsonl"
    out = train(
        TrainConfig(CFG, Selection(6, (5, 6)), steps=60, lr=2e-4, batch_size=16, eval_n=300, seed=0),
        RunMonitor(log_path=str(log)),
    )
    r, model = out.result.to_dict(), out.model
    assert "_model" not in r
    base_params = dict(base.named_parameters())
    frozen = [(n, p) for n, p in model.encoder.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(p, base_params[n]) for n, p in frozen)
    tuned_blk, frozen_blk = layer_list(model.encoder)[1][5], layer_list(model.encoder)[1][1]
    base_blocks = layer_list(base)[1]
    assert not torch.equal(tuned_blk.attention.self.query.weight, base_blocks[5].attention.self.query.weight)
    assert torch.equal(frozen_blk.attention.self.query.weight, base_blocks[1].attention.self.query.weight)
    majority = 0.58  # share of 'fresh' in the test split
    assert r["eval"]["accuracy"] > majority + 0.08, r["eval"]
    assert r["layers_kept"] == 6 and r["steps"] == 60 and not r["stopped"]
    assert len(r["history"]) == 60 and all("loss" in h for h in r["history"])
    assert 0 < r["flops_vs_full"] < 1 and r["trainable_params"] < r["total_params"]
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert any("eval" in l for l in lines) and any("loss" in l for l in lines)


class Recorder(RunMonitor):
    """Records every progress update; requests Stop / Skip when ``stop_at(kw)`` / ``skip_at(kw)`` say so."""

    def __init__(self, stop_at=lambda kw: False, skip_at=lambda kw: False):
        super().__init__()
        self.stop_at, self.skip_at = stop_at, skip_at
        self.updates, self.statuses = [], []
        self.stop_index = self.skip_index = None

    def update_progress(self, **kw):
        super().update_progress(**kw)
        self.updates.append(kw)
        if self.stop_index is None and self.stop_at(kw):
            self.stop_index = len(self.updates)
            self.request_stop()
        if self.skip_index is None and self.skip_at(kw):
            self.skip_index = len(self.updates)
            self.request_skip()

    def set(self, **kw):
        super().set(**kw)
        if "status" in kw:
            self.statuses.append(kw["status"])

    def after(self, index, phase):
        """Training steps ("train") or evaluation batches ("eval", "final_eval") reported after ``index``."""
        return [u for u in self.updates[index:] if u.get("phase") == phase and ("step" in u or "eval_done" in u)]


SMALL = AnalysisConfig(
    task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=64, seed=0), max_length=16, device="cpu"
)


def test_stop_during_training_ends_within_one_step_then_evaluates_the_partial_model():
    m = Recorder(stop_at=lambda kw: kw.get("phase") == "train" and kw["step"] >= 3)
    r = train(
        TrainConfig(SMALL, Selection(2, (2,)), steps=500, batch_size=8, eval_n=100, eval_every=1000, seed=0), m
    ).result
    assert r.stopped and r.steps == 3  # the stop came at the end of step 3: no further step ran
    assert m.after(m.stop_index, "train") == [] and len(r.history) == r.steps
    final = m.after(m.stop_index, "final_eval")
    assert [u["eval_done"] for u in final] == [64, 100]  # the partial model, evaluated with progress
    assert set(r.eval) == {"accuracy", "macro_f1"}
    assert m.statuses[-2:] == ["stopping", "stopped"] and m.snapshot()["stop_requested_at"] == 3


def test_stop_during_an_evaluation_ends_within_one_batch_and_skip_ends_the_final_one():
    m = Recorder(
        stop_at=lambda kw: kw.get("phase") == "eval" and kw["eval_done"] >= 64,
        skip_at=lambda kw: kw.get("phase") == "final_eval",
    )
    r = train(
        TrainConfig(SMALL, Selection(2, (2,)), steps=500, batch_size=8, eval_n=300, eval_every=2, seed=0), m
    ).result
    assert r.stopped and r.steps == 2
    assert m.after(m.stop_index, "eval") == [] and m.after(m.stop_index, "train") == []  # cut after batch 1 of 5
    assert m.after(m.skip_index, "final_eval") == []  # Skip: no batch after the one in flight
    assert len(m.after(m.stop_index, "final_eval")) == 1 and r.eval == {}
    assert m.snapshot()["status"] == "stopped" and m.snapshot()["result"]["stopped"]


def test_skip_before_the_end_skips_the_evaluation_altogether():
    m = Recorder(skip_at=lambda kw: kw.get("phase") == "train" and kw["step"] >= 1)
    r = train(TrainConfig(SMALL, Selection(2, (2,)), steps=50, batch_size=8, eval_n=100, seed=0), m).result
    assert r.stopped and r.steps == 1 and r.eval == {}
    assert m.after(m.skip_index, "final_eval") == [] and "stopping" not in m.statuses


def test_failing_export_marks_the_run_failed_never_finished(monkeypatch):
    from analysis.training import export, start_in_thread

    def broken(result, model):
        raise OSError("No space left on device\nwhile writing")

    monkeypatch.setattr(export, "artifacts", broken)
    m = Recorder()
    start_in_thread([TrainConfig(SMALL, Selection(2, (2,)), steps=2, batch_size=8, eval_n=20)], [m]).join(300)
    snap = m.snapshot()
    assert snap["status"] == "failed" and snap["error"] == "OSError: No space left on device while writing"
    assert "finished" not in m.statuses and m.artifacts is None


def test_result_json_keys_are_the_cli_keys():
    from analysis.training import RunResult

    keys = [
        "label",
        "strategy",
        "model",
        "task",
        "classifier_layer",
        "tuned_layers",
        "adapter",
        "tune_embeddings",
        "layers_kept",
        "n_layers",
        "trainable_params",
        "total_params",
        "full_trainable_params",
        "flops_per_example",
        "full_flops_per_example",
        "flops_vs_full",
        "seq_len",
        "history",
        "evals",
        "eval",
        "metric",
        "steps",
        "max_steps",
        "seconds",
        "train_seconds",
        "steps_per_second",
        "stopped",
        "seed",
        "lr",
        "batch_size",
        "n_train",
        "n_eval",
        "device",
        "world_size",
        "eval_examples",
        "prefix_cache",
        "dtype",
        "vocab",
        "held_out",
        "diverged",
        "diverged_at",
    ]
    r = RunResult(**dict.fromkeys(keys))
    assert list(r.to_dict()) == keys
    r.variability_before_after = {"layers": [0]}
    assert list(r.to_dict()) == keys + ["variability_before_after"]
    r.layer_chosen_on = "final-norm"
    assert list(r.to_dict()) == keys + ["variability_before_after", "layer_chosen_on"]


def test_baselines_come_from_one_place():
    from analysis.training import baseline_jobs

    base = TrainConfig(SMALL, Selection(3, (2, 3), adapter="lora"), steps=5, strategy="selected")
    jobs = baseline_jobs(base, 6, top=True, full=True)
    assert [j.strategy for j in jobs] == ["selected", "top", "full"]
    assert jobs[1].selection == select("top", 6, 2, adapter="lora") == Selection(6, (5, 6), adapter="lora")
    assert jobs[2].selection == select("full", 6, 1) and jobs[2].selection.tune_embeddings
    assert all(j.steps == 5 and j.analysis == SMALL for j in jobs)
    assert baseline_jobs(base, 6, top=False, full=False) == [base]


def test_importing_the_package_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys; from analysis.training import Selection, RunMonitor; "
        "print('transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT)).stdout
    assert out.split() == ["False", "False"]


def test_cli_train_strategy_and_exports(tmp_path):
    from conftest import run_cli

    out = tmp_path / "r.json"
    r = run_cli(
        "train",
        "--task",
        "bbc_news",
        "--n",
        100,
        "--max-length",
        32,
        "--strategy",
        "variability",
        "--k",
        1,
        "--steps",
        8,
        "--eval-n",
        50,
        "--device",
        "cpu",
        "--json",
        out,
        "--log",
        tmp_path / "l.jsonl",
        "--save",
        tmp_path / "save",
        cache_dir=tmp_path / "c",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    for k in (
        "classifier_layer",
        "tuned_layers",
        "layers_kept",
        "trainable_params",
        "total_params",
        "history",
        "eval",
        "seconds",
        "steps_per_second",
        "flops_vs_full",
    ):
        assert k in d
    assert d["tuned_layers"] == [d["classifier_layer"]] and d["flops_vs_full"] <= 1
    assert (tmp_path / "save" / "trainable.safetensors").exists()
    assert "layers_to_transform" in (tmp_path / "save" / "lora_config.py").read_text()
    bad = run_cli("train", "--classifier-layer", 3, "--tune-layers", "3,5", "--steps", 2, cache_dir=tmp_path / "c")
    assert bad.returncode == 2 and "above the classifier layer" in bad.stderr
    (tmp_path / "file").write_text("")
    unsaved = run_cli(
        "train",
        "--task",
        "bbc_news",
        "--n",
        40,
        "--max-length",
        16,
        "--classifier-layer",
        2,
        "--steps",
        1,
        "--eval-n",
        20,
        "--device",
        "cpu",
        "--save",
        tmp_path / "file" / "sub",
        cache_dir=tmp_path / "c",
    )
    assert unsaved.returncode == 2, unsaved.stderr[-2000:]
    assert [l for l in unsaved.stderr.splitlines() if l.startswith("error:")] == [
        unsaved.stderr.strip().splitlines()[-1]
    ]
    # refused before any training: the parent of the --save folder is a file
    assert "cannot write --save" in unsaved.stderr and "is a file, not a folder" in unsaved.stderr
    assert "Traceback" not in unsaved.stderr


def test_the_frozen_prefix_runs_without_dropout_in_train_mode(minilm):
    """Embeddings and the blocks below the lowest tuned one stay in eval mode when the Trainer calls train():
    the input of the lowest tuned block is the same on every pass, as the prefix cache assumes."""
    base, tok = minilm
    model = build_classifier(base, Selection(4, (3, 4)), num_labels=2)
    model.train()
    blocks = layer_list(model.encoder)[1]
    assert not model.encoder.embeddings.training and [b.training for b in blocks] == [False, False, True, True]
    assert model.head.training
    seen = []
    blocks[2].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    enc = tok(["a film", "another film here"], padding=True, return_tensors="pt")
    outs = [model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])["logits"] for _ in range(2)]
    assert torch.equal(seen[0], seen[1])
    assert not torch.equal(outs[0], outs[1])  # the tuned blocks and the head still drop out
    model.eval()
    assert not any(b.training for b in blocks) and not model.head.training
    full = build_classifier(base, select("full", 6, 1), num_labels=2).train()
    assert full.encoder.embeddings.training and all(b.training for b in layer_list(full.encoder)[1])


@pytest.mark.slow  # training
def test_failing_run_reports_error_and_worker_survives():
    from analysis.data.sampling import SampleConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.training import RunMonitor, Selection, TrainConfig, start_in_thread

    cfg = AnalysisConfig(sampling=SampleConfig(n=40), max_length=16, device="cpu")
    bad = TrainConfig(cfg, Selection(2, (2,)), steps=2, lr=-1.0, eval_n=20)
    good = TrainConfig(cfg, Selection(2, (2,)), steps=2, eval_n=20)
    ms = [RunMonitor(), RunMonitor()]
    start_in_thread([bad, good], ms).join(300)
    assert ms[0].snapshot()["status"] == "failed" and "learning rate" in ms[0].snapshot()["error"]
    assert ms[1].snapshot()["status"] == "finished"


@pytest.mark.slow  # training
def test_abandoned_run_stops_itself():
    """A closed browser tab stops sending heartbeats: the run ends and frees its model."""
    from analysis.data.sampling import SampleConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.training import RunMonitor, Selection, TrainConfig, train

    m = RunMonitor(abandon_after=0.0)
    r = train(
        TrainConfig(
            AnalysisConfig(sampling=SampleConfig(n=40), max_length=16, device="cpu"),
            Selection(2, (2,)),
            steps=200,
            eval_n=20,
        ),
        m,
    ).result
    assert r.stopped and r.steps <= 1 and m.snapshot()["status"] == "stopped"
    assert r.eval == {}  # nobody is watching: the partial model is not evaluated


def test_a_decoders_variability_strategy_says_which_states_chose_its_layer(tmp_path, capsys):
    from analysis.cli import main
    from conftest import tiny_model

    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"text {i} is {'ab'[i % 2]},{'ab'[i % 2]}\n" for i in range(60)))
    argv = ["train", "--data", str(data), "--n", "40", "--eval-n", "10", "--max-length", "16", "--device", "cpu"]
    argv += ["--model", str(tiny_model("llama", tmp_path / "llama")), "--strategy", "variability", "--k", "1"]
    argv += ["--steps", "2", "--remeasure", "--cache-dir", str(tmp_path / "c")]
    for rep, chosen in (("auto", "final-norm"), ("raw", "raw")):
        out = tmp_path / f"{rep}.json"
        assert main([*argv, "--representation", rep, "--json", str(out)]) == 0
        d = json.loads(out.read_text())
        assert d["layer_chosen_on"] == d["variability_before_after"]["representation"] == chosen
        assert f"(ℓ* from ν on the {chosen} states)" in capsys.readouterr().out
