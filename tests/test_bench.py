import json

import pytest

from analysis.cli import main


def test_bench_quick_sections_write_json_and_report(tmp_path, capsys):
    out = tmp_path / "b.json"
    doc = tmp_path / "docs" / "benchmarks.md"
    code = main(["bench", "--quick", "--only", "metric,cache", "--reps", "1", "--json", str(out), "--doc", str(doc),
                 "--plots", str(tmp_path / "docs" / "img")])
    assert code == 0
    d = json.loads(out.read_text())
    assert d["metric_max_rel_diff"] < 1e-6
    assert 0 < d["metric_ms_per_layer_d768"] < 1000 and 0 < d["cache_hit_seconds"] < 5
    text = doc.read_text()
    assert f"{d['cache_hit_seconds']:.3f}" in text and "Headline ratios" in text
    cache_row = next(l for l in text.splitlines() if l.startswith("| full-curve cache hit"))
    assert cache_row.endswith("| yes |" if d["cache_hit_seconds"] < 0.5 else "| **no** |")
    nu_row = next(l for l in text.splitlines() if l.startswith("| ν per layer at d=768"))
    assert nu_row.endswith("| yes |" if d["metric_ms_per_layer_d768"] <= 5 else "| **no** |")
    assert all("ours_in_gemms" in r for r in d["metric"])
    assert "metric d=768 C=20" in capsys.readouterr().out


def test_cuda_paths_fall_back_on_cpu():
    import torch

    from analysis.errors import VariscopeError
    from analysis.models import resolve_device, resolve_dtype
    from analysis.projection import gpu_umap_available

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") in ("cpu", "mps")
    assert resolve_dtype("auto", "cpu") == "float32"
    assert gpu_umap_available() is False
    with pytest.raises(VariscopeError, match="no CUDA GPU"):
        resolve_device("cuda")
