"""What the benchmark sections share: their settings, timing, texts, models, the curve and its floor."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import VariscopeError
from analysis.settings import DEFAULTS

#: The sections, in the order a run measures them and the report lists them.
SECTION_NAMES: tuple[str, ...] = (
    "curve",
    "batching",
    "metric",
    "cache",
    "depth",
    "projection",
    "training",
    "memory",
    "cards",
    "stream",
    "stream_memory",
    "encoder",
    "training_cache",
    "cpu_bf16",
    "estimate",
)
#: The models the curve section adds on a full run, when they are installed.
DEEPER_MODELS: tuple[str, ...] = ("mpnet", "gemma3-270m")
#: (layers, width) of the random BERT whose throughput the encoder section measures.
ENCODER_SHAPE: tuple[int, int] = (12, 768)
#: The repository root: child processes run from it (``python -m analysis.bench....``).
REPO_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures, and on what.

    model, device, dtype : as for a curve (defaults from :data:`analysis.settings.DEFAULTS`).
    quick : the small sizes (a few minutes on 2 idle cores) instead of the full run's.
    reps : repetitions of every timing (None: each section's own).
    only : the sections to run (None: all of :data:`SECTION_NAMES`).
    data : a CSV file (``text,label`` columns) whose texts stand in for the offline rotten_tomatoes task
        everywhere (the GPU record's synthetic texts; None: rotten_tomatoes).
    curve_models : the curve section's models (None: ``model``, plus :data:`DEEPER_MODELS` on a full run).
    encoder_shape : (layers, width) of the encoder section's random BERT.
    names : (model, name) pairs: how the results name a model given as a folder (by default, its path).
    model_given : ``model`` was asked for (``--model``), not the default: the cpu_bf16 section, which picks
        its own model otherwise, uses it.
    """

    model: str = DEFAULTS["model"]
    quick: bool = False
    device: str = DEFAULTS["device"]
    dtype: str = DEFAULTS["dtype"]
    reps: int | None = None
    only: tuple[str, ...] | None = None
    data: str | None = None
    curve_models: tuple[str, ...] | None = None
    encoder_shape: tuple[int, int] = ENCODER_SHAPE
    names: tuple[tuple[str, str], ...] = ()
    model_given: bool = False

    def check(self) -> BenchSettings:
        """``self``, or a VariscopeError naming the first value that cannot be used."""
        if self.reps is not None and self.reps < 1:
            raise VariscopeError(f"--reps must be at least 1, got {self.reps}")
        unknown = set(self.only or ()) - set(SECTION_NAMES)
        if unknown:
            raise VariscopeError(
                f"unknown bench section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTION_NAMES)}"
            )
        if self.data is not None and not Path(self.data).is_file():
            raise VariscopeError(f"bench texts file {self.data} does not exist")
        return self

    def task(self):
        """The TaskConfig whose texts every section reads."""
        from analysis.data.tasks import TaskConfig

        return TaskConfig(name=None, data=self.data) if self.data else TaskConfig("rotten_tomatoes")

    def label(self, model: str) -> str:
        """The name the results give ``model``."""
        return dict(self.names).get(model, model)

    def models_for_curve(self) -> tuple[str, ...]:
        if self.curve_models is not None:
            return self.curve_models
        return (self.model,) if self.quick else (self.model, *DEEPER_MODELS)


def median_time(f, reps: int, *args, **kwargs) -> float:
    """Median wall time of ``f(*args, **kwargs)`` over ``reps`` calls (arguments bound now, not late)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_texts(s: BenchSettings, n: int, seed: int = 0):
    """(texts, labels): a stratified sample of ``n`` texts of the settings' task (``n`` texts, shape (n,))."""
    from analysis.data.sampling import SampleConfig, sample
    from analysis.data.tasks import load_task

    t = sample(load_task(s.task()), SampleConfig(n=n, seed=seed))
    return t.texts, t.labels


def bench_model(name, device, dtype):
    """(model, tokenizer, resolved device), loaded once per process through the pipeline's model cache."""
    from analysis.pipeline import AnalysisConfig, cached_model, resolve_target

    t = resolve_target(AnalysisConfig(model=name, device=device, dtype=dtype))
    m, tok = cached_model(t.ref, t.device, t.dtype)
    return m, tok, t.device


def analysis_config(s: BenchSettings, n: int, *, seed: int = 0, **kwargs):
    """The AnalysisConfig of ``n`` texts of the settings' task on the settings' model, device and dtype."""
    from analysis.data.sampling import SampleConfig
    from analysis.pipeline import AnalysisConfig

    return AnalysisConfig(
        model=s.model, task=s.task(), sampling=SampleConfig(n=n, seed=seed), device=s.device, dtype=s.dtype, **kwargs
    )


def our_curve(model, tok, texts, labels, *, device, max_length=128, batch_size=32):
    """ν of every layer (list of L+1 floats): one forward pass with every layer pooled, then ν."""
    from analysis.models.hidden_states import extract_states
    from analysis.variability import variability_curve

    states = extract_states(model, tok, texts, None, max_length=max_length, batch_size=batch_size, device=device)
    return variability_curve(states, labels).variability


def floor(model, tok, texts, *, device, max_length=128, batch_size=32, sort=True):
    """A bare forward pass over the same batches: the least any curve can cost."""
    from analysis.models.batching import make_batches
    from analysis.models.hidden_states import forward_batches

    batches = make_batches(tok, texts, None, max_length=max_length, batch_size=batch_size, sort=sort)
    forward_batches(model, batches, device=device, hidden_states=False)
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()  # GPU work is asynchronous: time it to the end


def row(name: str, text: str) -> None:
    """One line of the run's progress table."""
    print(f"{name:<34} {text}", flush=True)
