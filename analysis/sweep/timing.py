"""A sweep's time: the whole sweep's estimate before it starts, and its progress and time left while it runs.

The estimate is the shared estimator's (:func:`analysis.training.estimate.estimate_configs`: the cost
model at this model's measured forward rate, with the frozen-prefix cache where it applies, so a run
costs what it tunes), summed over the runs still to train: the learning-rate search's runs on the
validation split (four fifths of the training texts, evaluated on the other fifth) and the final runs
on the whole training sample; runs already in the cache cost nothing. The selectors' states (one
forward pass of the training texts through every block per representation) are counted as one-off passes.

While it runs, the time left is the seconds per *trained* step so far times the steps still to do:
runs served from the cache shorten the remaining work but say nothing about the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from analysis.pipeline import AnalysisConfig
from analysis.training.config import TrainConfig
from analysis.training.estimate import Estimate, OneOffPass, combine, duration, estimate_configs


def estimate_sweep(
    cfg: AnalysisConfig,
    search: Sequence[TrainConfig],
    finals: Sequence[TrainConfig],
    *,
    representations: int = 1,
    loader: Callable | None = None,
    cache_root=None,
) -> Estimate | None:
    """The time of the ``search`` runs (validation split) and ``finals`` runs still to train, with the selectors'
    states of ``representations`` representations, before any starts (see the module doc); None: nothing to train.
    ``cache_root``: where the model is found (an offline model is converted there).
    """
    from analysis.models.load import describe, resolve_model
    from analysis.training.data import split_train_eval, split_validation

    if not search and not finals:
        return None
    train, held = split_train_eval(cfg, (list(finals) or list(search))[0].eval_n)
    rest, val = split_validation(train)
    n_labels = len(train.label_names)
    n_layers = int(describe(resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache_root))["layers"])
    states = [OneOffPass(len(train) * representations, n_layers, "selector states")]
    parts = []
    if finals:
        configs = [replace(tc, eval_n=len(held)) for tc in finals]
        parts += estimate_configs(
            configs, train.texts, n_labels, loader=loader, one_off=states, share_prefix=True, cache_root=cache_root
        )
    if search:
        configs = [replace(tc, eval_n=len(val)) for tc in search]
        parts += estimate_configs(
            configs,
            rest.texts,
            n_labels,
            loader=loader,
            one_off=[] if finals else states,
            share_prefix=True,
            cache_root=cache_root,
        )
    runs = len(parts)
    return combine(parts, f"{parts[0].how}; {runs} run{'s' if runs != 1 else ''} to train")


def time_left(
    remaining_steps: int, trained_steps: int, trained_seconds: float, fallback_per_step: float | None = None
) -> float | None:
    """Seconds left: ``remaining_steps`` at the rate of the steps trained so far (cached runs excluded), or at
    ``fallback_per_step`` (the estimate's) before any step was trained; None when neither is known."""
    if remaining_steps <= 0:
        return 0.0
    if trained_steps > 0:
        return trained_seconds / trained_steps * remaining_steps
    return None if fallback_per_step is None else fallback_per_step * remaining_steps


class SweepProgress:
    """Counts a sweep's steps, trained or from the cache, and says how far it is after every run.

    ``say(line)`` gets one line per run; ``report(done, total, seconds, seconds left or None)`` the same
    numbers; ``clock`` gives seconds (injected by tests); ``per_step`` is the estimate's seconds per step,
    the rate until a step has been trained. ``to_train``: the steps of the runs not in the cache when the sweep
    began, the only ones the time left counts (cached runs still to be read take no time); None: every step
    not done yet.
    """

    def __init__(
        self,
        total: int,
        say: Callable[[str], None],
        report: Callable[[int, int, float, float | None], None] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        per_step: float | None = None,
        to_train: int | None = None,
    ) -> None:
        self.total, self.say, self.report, self.clock, self.per_step = total, say, report, clock, per_step
        self.to_train = to_train
        self.t0 = clock()
        self.done = self.trained = self.cached = 0
        self.trained_seconds = 0.0

    def tick(self, steps: int, seconds: float | None) -> None:
        """``steps`` more done: trained in ``seconds``, or (None) served from the cache."""
        self.done += steps
        if seconds is None:
            self.cached += steps
        else:
            self.trained += steps
            self.trained_seconds += seconds
        elapsed = self.clock() - self.t0
        steps_left = self.total - self.done if self.to_train is None else max(0, self.to_train - self.trained)
        left = time_left(min(steps_left, self.total - self.done), self.trained, self.trained_seconds, self.per_step)
        if self.done >= self.total:
            when = "done"
        else:
            when = "time left not known yet" if left is None else f"about {_seconds(left)} left"
        cached = f" ({self.cached} from the cache)" if self.cached else ""
        self.say(f"  {self.done}/{self.total} steps{cached}, {_seconds(elapsed)} so far, {when}")
        if self.report is not None:
            self.report(self.done, self.total, elapsed, left)


def _seconds(x: float) -> str:
    """``x`` seconds as a person reads them; under half a second is "0 s" (not the estimator's "1 s")."""
    return "0 s" if x < 0.5 else duration(x)
