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
    from analysis.models import resolve_model
    from analysis.pipeline import cached_model

    return cached_model(resolve_model("minilm"), "cpu", "float32", False)


@pytest.fixture
def cache(tmp_path):
    from analysis.cache import DiskCache

    return DiskCache(tmp_path / "cache")


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
