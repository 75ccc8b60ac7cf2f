"""The ``training_cache`` bench section's keys, on a tiny random model (the numbers themselves are measurements)."""

import pytest

from analysis.training import Selection
from conftest import tiny_model

KEYS = (
    "prefix_cache_speedup",
    "prefix_cache_flop_speedup",
    "prefix_cache_step_speedup",
    "vocab_speedup",
    "vocab_vs_frozen",
    "prefix_cache_speedup_over_flop",
)


def test_run_flops_move_the_prefix_from_every_step_to_one_pass_per_text(tmp_path):
    import transformers as tf

    from analysis.training.cost import run_flops

    m = tf.AutoModel.from_pretrained(tiny_model("bert", tmp_path / "bert"))
    sel = Selection(4, (4,))
    shape = dict(examples=1600, texts=100, evaluated=300)
    assert run_flops(m, sel, 30, 2, **shape, cached=True) < run_flops(m, sel, 30, 2, **shape, cached=False)
    # only the prefix pass is left with nothing trained or evaluated: three of the four blocks once per text
    once = run_flops(m, sel, 30, 2, examples=0, texts=100, evaluated=0, cached=True)
    assert once > 0 and run_flops(m, sel, 30, 2, examples=0, texts=100, evaluated=0, cached=False) == 0
    assert once == pytest.approx(3 * run_flops(m, Selection(4, (1,)), 30, 2, examples=0, texts=0, evaluated=100,
                                               cached=False) / 4)  # fmt: skip


def test_the_section_reports_every_key_side_by_side_on_a_tiny_model(tmp_path):
    from analysis.bench.report import section_lines
    from analysis.bench.training_cache import training_cache

    lines: list[str] = []
    res = training_cache(
        model=str(tiny_model("gemma3", tmp_path / "g")),
        device="cpu",
        n_train=24,
        n_eval=8,
        steps=2,
        full_steps=1,
        max_length=16,
        warmup=False,
        progress=lines.append,
    )
    assert all(isinstance(res[k], float) and res[k] > 0 for k in KEYS)
    t = res["training_cache"]
    assert set(t["step_s"]) == {"cached", "uncached", "task_vocab", "full_vocab", "frozen_embeddings"}
    assert t["vocab"]["task_sized"] and t["vocab"]["rows"] < t["vocab"]["of"]
    assert t["run_flops"]["cached"] <= t["run_flops"]["uncached"]
    assert len(lines) == 5 and "## Training cache" in section_lines(res, ".")
