"""How long a training run will take, before it starts: the one estimator of the Training page, ``train``
and ``reproduce`` (the ETA while a run goes is :mod:`.callbacks`'s).

An :class:`Estimate` comes one of two ways:

- **probe** (:func:`estimate_run`, what ``train`` prints): a few forward+backward passes of the partial
  model about to be trained, on a real batch of its training texts, timed after :data:`PROBE_WARMUP`
  warm-up passes; its weights, gradients and random state are left as they were;
- **cost model** (:func:`from_costs` with a rate): the FLOPs of :func:`.cost.cost` divided by the FLOP/s
  of a forward pass of the model on this device (:func:`measure_rate`, measured once per model, device and
  dtype and kept in memory). The Training page and ``reproduce`` use it (:func:`estimate_configs`: no copy
  of the model, no backward pass), and so does ``train`` when a probe would take longer than
  :data:`PROBE_BUDGET` seconds.

Both add the held-out evaluations (a forward pass of the kept blocks over the held-out texts every
``eval_every`` steps and at the end) and one-off passes (:class:`OneOffPass`, e.g. the frozen-prefix pass:
N texts once through the first t blocks), at the forward rate. Not counted: loading the model and the
data, the optimizer's update (small next to a forward+backward pass of a batch), the Trainer's bookkeeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace

from analysis.errors import VariscopeError
from analysis.training.config import default_eval_every

PROBE_WARMUP = 2  # first passes allocate and pick kernels: slower than the rest, not timed
PROBE_STEPS = 3
PROBE_BUDGET = 30.0  # seconds a probe may take; longer: the cost model at the measured rate
RATE_BATCH = 16  # texts of the forward pass that measures the rate

_RATES: dict[tuple, float] = {}  # (model fingerprint, device, dtype) -> forward FLOP/s
_RATES_LOCK = threading.Lock()


@dataclass(frozen=True)
class OneOffPass:
    """A forward pass made once before training: ``texts`` texts through ``blocks`` blocks from block ``start``."""

    texts: int
    blocks: int
    what: str = "one-off pass"
    start: int = 1


@dataclass(frozen=True)
class Estimate:
    """The time of a run (or of a plan of runs) before it starts.

    seconds : the total; per_step : seconds of one optimizer step; steps : optimizer steps in all;
    parts : seconds by part ("train", "eval", and each one-off pass by its ``what``), summing to ``seconds``;
    method : "probe" or "cost model"; how : how it was obtained, in words.
    """

    seconds: float
    per_step: float
    steps: int
    parts: dict[str, float]
    method: str
    how: str

    def text(self) -> str:
        """One line, e.g. "about 3 min 20 s on this machine (probe of 3 steps)"."""
        return f"about {duration(self.seconds)} on this machine ({self.how})"

    def to_dict(self) -> dict:
        return {**asdict(self), "text": self.text()}


def duration(seconds: float) -> str:
    """``seconds`` rounded to what a person reads: "7 s", "45 s", "3 min 20 s", "2 h 10 min"."""
    s = max(0.0, float(seconds))

    def near(x: float, unit: int) -> int:  # half up (round() takes 12.5 to 12)
        return unit * int(x / unit + 0.5)

    if s < 57.5:
        return f"{max(1, near(s, 1))} s" if s < 9.5 else f"{near(s, 5)} s"
    if s < 3595:
        m, r = divmod(near(s, 10), 60)
        return f"{m} min {r} s" if r else f"{m} min"
    h, m = divmod(near(s, 60) // 60, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def evaluations(steps: int, eval_every: int) -> int:
    """Held-out passes of a run: one every ``eval_every`` steps, and a final one unless the last step had one."""
    return steps // eval_every + (1 if steps % eval_every else 0)


def from_costs(
    costs: dict,
    *,
    steps: int,
    batch_size: int,
    eval_n: int,
    rate: float,
    eval_every: int | None = None,
    per_step: float | None = None,
    one_off: Sequence[OneOffPass] = (),
    world_size: int = 1,
    how: str | None = None,
) -> Estimate:
    """The time of a run from the cost model (``costs`` of :func:`.cost.cost`) at ``rate`` forward FLOP/s.

    A step takes ``flops_per_example · batch_size / world_size / rate`` seconds, or ``per_step`` when
    given (a probe's); ``eval_every`` None: the run's default. Each of the ``world_size`` processes
    evaluates its share of the ``eval_n`` held-out texts.
    """
    if not rate > 0:
        raise VariscopeError(f"the rate must be positive, got {rate}")
    every = eval_every or default_eval_every(steps)
    step_s = per_step if per_step is not None else costs["flops_per_example"] * batch_size / world_size / rate
    fwd = costs["block_forward_flops"]
    # with the frozen-prefix cache the held-out texts' prefix was computed once too (a one-off pass)
    eval_flops = sum(fwd[: costs["layers_kept"]]) + costs["head_forward_flops"] - costs.get("prefix_forward_flops", 0.0)
    eval_s = evaluations(steps, every) * eval_n / world_size * eval_flops / rate
    parts = {"train": steps * step_s, "eval": eval_s}
    once = costs.get("pass_block_forward_flops") or fwd  # a one-off pass batches texts of like length: little padding
    for p in one_off:
        parts[p.what] = parts.get(p.what, 0.0) + p.texts * sum(once[p.start - 1 : p.start - 1 + p.blocks]) / rate
    method = "cost model" if per_step is None else "probe"
    return Estimate(
        seconds=sum(parts.values()),
        per_step=step_s,
        steps=steps,
        parts=parts,
        method=method,
        how=how or (f"cost model at {rate / 1e9:.3g} GFLOP/s" if per_step is None else "probe"),
    )


def combine(estimates: Sequence[Estimate], how: str) -> Estimate:
    """Several runs one after the other (a plan): times, steps and parts added up."""
    parts: dict[str, float] = {}
    for e in estimates:
        for k, v in e.parts.items():
            parts[k] = parts.get(k, 0.0) + v
    steps = sum(e.steps for e in estimates)
    methods = {e.method for e in estimates}
    return Estimate(
        seconds=sum(e.seconds for e in estimates),
        per_step=parts.get("train", 0.0) / steps if steps else 0.0,
        steps=steps,
        parts=parts,
        method=methods.pop() if len(methods) == 1 else "mixed",
        how=how,
    )


def rate_key(target) -> tuple:
    """The key of a measured rate: the model's fingerprint, the device and the dtype it is loaded in."""
    from analysis.training.cost import load_dtype

    return (target.ref.fingerprint, target.device, load_dtype(target.device, target.dtype))


def known_rate(key: tuple) -> float | None:
    """The rate measured earlier in this process for ``key`` (None: not yet)."""
    with _RATES_LOCK:
        return _RATES.get(key)


def measure_rate(model, batch: dict, key: tuple | None = None, amp: str | None = None) -> float:
    """Forward FLOP/s of ``model``'s blocks on ``batch`` (input_ids, attention_mask: (B, T)), kept under ``key``.

    ``model`` is a base model or a classifier's encoder; one warm-up pass, then one timed pass
    (no gradients). A rate already kept under ``key`` is returned without measuring again.
    """
    import torch

    from analysis.training.cost import block_forward_flops

    if key is not None and (r := known_rate(key)) is not None:
        return r
    ids = batch["input_ids"]
    flops = ids.shape[0] * sum(block_forward_flops(model, ids.shape[1]))
    kw = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    with torch.no_grad(), _autocast(str(ids.device), amp):
        model(**kw)
        seconds = _timed(lambda: model(**kw), str(ids.device))
    rate = flops / max(seconds, 1e-9)
    if key is not None:
        with _RATES_LOCK:
            _RATES[key] = rate
    return rate


def probe(model, batch: dict, *, amp: str | None = None, warmup: int = PROBE_WARMUP, steps: int = PROBE_STEPS) -> float:
    """Seconds of one forward+backward pass of the classifier ``model`` on ``batch`` (with "labels").

    The mean of ``steps`` passes after ``warmup`` ones, in eval mode (no dropout, so the random
    state is untouched); the gradients are dropped afterwards and no weight changes: the run that
    follows is the one it would have been without the probe.
    """
    device = str(batch["input_ids"].device)
    was_training = model.training
    model.eval()

    def one() -> None:
        with _autocast(device, amp):
            loss = model(**batch)["loss"]
        loss.backward()

    try:
        for _ in range(warmup):
            one()

        def timed_steps() -> None:
            for _ in range(steps):
                one()

        seconds = _timed(timed_steps, device)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return seconds / steps


def warm_rate(model, plan, target) -> float:
    """The forward rate of ``model``'s encoder on the first training batch, measured (once) and kept, so that
    :func:`estimate_run` finds it after the frozen-prefix cache replaced the prefix's blocks."""
    from analysis.models.load import split_dtype
    from analysis.training.trainer import probe_batch

    batch = probe_batch(plan, target.device, plan.per_device_batch)
    return measure_rate(model.encoder, batch, rate_key(target), split_dtype(target.dtype)[1])


def estimate_run(
    model, plan, costs: dict, target, *, one_off: Sequence[OneOffPass] = (), budget: float = PROBE_BUDGET
) -> Estimate:
    """``train``'s estimate of the run it is about to make (``model`` built, ``plan`` made, ``costs`` computed).

    A probe of ``model`` on the first per-process batch of ``plan``'s training texts; the cost model
    at the measured forward rate instead when the probe would take longer than ``budget`` seconds.
    """
    from analysis.models.load import split_dtype
    from analysis.training.trainer import probe_batch

    batch = probe_batch(plan, target.device, plan.per_device_batch)
    amp = split_dtype(target.dtype)[1]
    rate = measure_rate(model.encoder, batch, rate_key(target), amp)
    common = dict(
        steps=plan.max_steps,
        batch_size=plan.batch_size,
        eval_n=len(plan.eval_data),
        eval_every=plan.eval_every,
        rate=rate,
        one_off=one_off,
        world_size=plan.world_size,
    )
    guess = from_costs(costs, **common)
    probe_s = (PROBE_WARMUP + PROBE_STEPS) * guess.per_step
    if probe_s > budget:
        why = f"cost model at {rate / 1e9:.3g} GFLOP/s; a probe of {PROBE_STEPS} steps would take {duration(probe_s)}"
        return replace(guess, how=why)
    return from_costs(costs, per_step=probe(model, batch, amp=amp), how=f"probe of {PROBE_STEPS} steps", **common)


def rate_for(
    base, tok, texts: Sequence[str], key: tuple, *, max_length: int, device: str, amp: str | None = None
) -> float:
    """The forward rate of ``base`` under ``key``: measured on the first :data:`RATE_BATCH` of ``texts`` once,
    under the autocast ``amp`` ("bfloat16", …) the runs train under."""
    import numpy as np

    from analysis.models.batching import pad_rows, tokenize

    if (r := known_rate(key)) is not None:
        return r
    sample = list(texts)[:RATE_BATCH]
    if not sample:
        raise VariscopeError("no texts to measure the speed of this model on")
    enc = tokenize(tok, sample, None, max_length)
    tensors = pad_rows(enc, np.arange(len(sample)), tok.pad_token_id).tensors
    return measure_rate(base, {k: v.to(device) for k, v in tensors.items()}, key, amp)


def estimate_configs(
    configs: Sequence,
    texts: Sequence[str],
    num_labels: int,
    *,
    loader: Callable | None = None,
    one_off: Sequence[OneOffPass] = (),
    share_prefix: bool = False,
    cache_root=None,
) -> list[Estimate]:
    """The cost-model estimate of each TrainConfig of ``configs`` before any of them starts (the Training page's
    runs, a reproduction's plan), at this model's measured forward rate.

    ``share_prefix``: the configs run in this order in one process under
    :func:`analysis.training.prefix.keep_states` on the same texts (a sweep's), so a block's frozen prefix is
    computed once and a higher one chained from it; else each run pays its whole prefix.

    The configs share one model and task; ``texts`` are their training texts (the mean token length of
    at most 2000 of them, and the rate's batch). The model comes from ``loader(ref, device, dtype,
    trust_remote_code)`` (default: the in-process cache), loaded as :func:`~analysis.training.train`
    loads it. Nothing is copied or trained; the rate is measured once per model and device.
    ``one_off`` passes are counted once, with the first config. ``cache_root``: where an offline model is found.
    """
    import numpy as np

    from analysis.models.batching import tokenize
    from analysis.models.load import split_dtype
    from analysis.pipeline import cached_model, resolve_target
    from analysis.training.cost import block_forward_flops, cost, load_dtype

    if not configs:
        return []
    a = configs[0].analysis
    target = resolve_target(a, cache_root)
    base, tok = (loader or cached_model)(
        target.ref, target.device, load_dtype(target.device, target.dtype), a.trust_remote_code
    )
    lengths = np.array([len(x) for x in tokenize(tok, list(texts)[:2000], None, a.max_length)["input_ids"]])
    amp = split_dtype(target.dtype)[1]
    rate = rate_for(base, tok, texts, rate_key(target), max_length=a.max_length, device=target.device, amp=amp)
    how = f"cost model at {rate / 1e9:.3g} GFLOP/s measured here"
    out: list[Estimate] = []
    seen: set[int] = set()  # prefix inputs this process will hold by then (the memo: analysis/training/prefix.py)
    for tc in configs:
        steps = tc.steps or math.ceil(tc.epochs * math.ceil(len(texts) / tc.batch_size))
        padded = padded_length(lengths, tc.batch_size)  # a training or held-out batch runs at its longest text
        c = cost(base, tc.selection, padded, num_labels)
        costs, passes = _with_prefix(base, tc, c, padded, len(texts), seen if share_prefix else None)
        costs["pass_block_forward_flops"] = block_forward_flops(base, float(lengths.mean()))
        out.append(
            from_costs(
                costs,
                steps=steps,
                batch_size=tc.batch_size,
                eval_n=tc.eval_n,
                eval_every=tc.eval_every,
                rate=rate,
                one_off=passes + ([] if out else list(one_off)),
                how=how,
            )
        )
    return out


def padded_length(lengths, batch: int, draws: int = 256) -> float:
    """The mean length of a batch of ``batch`` texts drawn at random from token ``lengths`` (n,): a batch is padded
    to its longest text, so short texts of mixed length cost about twice their mean. Seeded: the same each time."""
    import numpy as np

    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return 0.0
    b = min(max(1, batch), len(lengths))
    rng = np.random.default_rng(0)
    return float(np.mean([lengths[rng.choice(len(lengths), b, replace=False)].max() for _ in range(draws)]))


def _with_prefix(
    base, tc, costs: dict, seq_len: float, n_train: int, seen: set[int] | None = None
) -> tuple[dict, list[OneOffPass]]:
    """(costs, one-off passes) of ``tc`` with the frozen-prefix cache where it applies: each step skips the forward
    pass of blocks 1..t-1, which runs once per training and held-out text instead. ``seen``: the blocks t whose
    input an earlier run of the same process and texts computed (updated): kept, a run needs no pass; chained
    from the highest lower one s, it runs blocks s..t-1 only."""
    from analysis.training.cost import block_forward_flops
    from analysis.training.model import lowest_trained
    from analysis.training.prefix import unsupported

    t = lowest_trained(tc.selection)
    if not tc.prefix_cache or t <= 1 or unsupported(base) is not None:
        return costs, []
    saved = sum(block_forward_flops(base, seq_len)[: t - 1])
    costs = {**costs, "flops_per_example": costs["flops_per_example"] - saved, "prefix_forward_flops": saved}
    seen = set() if seen is None else seen
    start = max((s for s in seen if s <= t), default=1)
    seen.add(t)
    if start == t:
        return costs, []
    what = "frozen-prefix pass" if start == 1 else f"frozen-prefix pass chained from block {start}"
    return costs, [OneOffPass(texts=n_train + tc.eval_n, blocks=t - start, what=what, start=start)]


def _autocast(device: str, amp: str | None):
    """The autocast a run whose weights and compute dtypes differ trains under (CUDA with AMP; the CPU under
    "autocast-bfloat16"), so a measured rate or probe runs as the run will; else nothing."""
    if not amp:
        return nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=getattr(torch, amp))


def _timed(fn: Callable[[], object], device: str) -> float:
    """Wall seconds of ``fn()``, waiting for a CUDA device's queued work at both ends."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0
