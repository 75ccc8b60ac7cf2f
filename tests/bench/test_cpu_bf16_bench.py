"""The ``cpu_bf16`` bench section: its keys on a tiny random model, and one line where bf16 cannot be measured."""

import analysis.models.load as load
from analysis.bench.cpu_bf16 import KEYS
from conftest import tiny_model


def test_the_section_reports_speedups_and_the_change_of_nu_lstar_and_metric_on_a_tiny_model(monkeypatch, tmp_path):
    from analysis.bench.cpu_bf16 import cpu_bf16
    from analysis.bench.report import headline_lines, section_lines

    monkeypatch.setattr(load, "cpu_bf16_supported", lambda: True)  # emulated where not native: slower, same keys
    lines: list[str] = []
    res = cpu_bf16(
        model=str(tiny_model("bert", tmp_path / "bert")),
        device="cpu",
        n=48,
        n_eval=16,
        steps=2,
        reps=1,
        max_length=16,
        warmup=False,
        progress=lines.append,
    )
    assert set(KEYS) <= set(res)
    assert all(res[k] > 0 for k in ("cpu_bf16_speedup", "cpu_bf16_curve_speedup", "cpu_bf16_step_speedup"))
    assert res["cpu_bf16_speedup"] == res["cpu_bf16_step_speedup"]
    assert 0 <= res["cpu_bf16_nu_max_rel_change"] < 1
    assert isinstance(res["cpu_bf16_lstar_change"], int) and -4 <= res["cpu_bf16_lstar_change"] <= 4
    assert -1 <= res["cpu_bf16_metric_change"] <= 1
    t = res["cpu_bf16"]
    assert t["layers"] == 4 and all(len(v) == 5 for v in t["nu"].values())
    assert t["nu"]["float32"] != t["nu"]["autocast-bfloat16"]  # the bf16 curve did run in bf16
    assert res["cpu_bf16_lstar_change"] == t["lstar"]["autocast-bfloat16"] - t["lstar"]["float32"]
    assert t["dtype"] == {"float32": "float32", "autocast-bfloat16": "autocast-bfloat16"}
    assert len(lines) == 4  # one curve of each dtype, one training run of each
    res["machine"] = {"device": "cpu"}
    text = "\n".join(section_lines(res, ".") + headline_lines(res))
    assert "## bfloat16 autocast on the CPU" in text and "`cpu_bf16_speedup`" in text


def test_the_section_records_one_skip_line_and_no_keys_where_the_cpu_lacks_bf16(monkeypatch):
    from analysis.bench.cpu_bf16 import cpu_bf16
    from analysis.bench.report import section_lines

    monkeypatch.setattr(load, "cpu_bf16_supported", lambda: False)
    lines: list[str] = []
    res = cpu_bf16(model="never-loaded", device="cpu", progress=lines.append)
    assert set(res) == {"cpu_bf16"} and set(res["cpu_bf16"]) == {"skipped"}
    why = res["cpu_bf16"]["skipped"]
    assert "native bfloat16" in why and "\n" not in why
    assert len(lines) == 1 and why in lines[0]
    assert f"Skipped: {why}." in section_lines(res, ".")


def test_the_bench_passes_an_explicit_model_to_the_section_and_lets_it_pick_otherwise(monkeypatch):
    import argparse

    from analysis.bench import run
    from analysis.cli.bench import add_args, settings

    p = argparse.ArgumentParser()
    add_args(p)
    seen = []
    monkeypatch.setattr(run, "cpu_bf16", lambda **kw: seen.append(kw["model"]) or {})
    for argv in ([], ["--model", "minilm"]):  # minilm is also the bench's default model
        s = settings(p.parse_args(["--only", "cpu_bf16", *argv]))
        assert s.model == "minilm"
        run.bench_cpu_bf16(s)
    assert seen == [None, "minilm"]
