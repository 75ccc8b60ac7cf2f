"""``python -m analysis train``: partial fine-tuning from the command line."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from pathlib import Path

from analysis.cli.common import add_data_args, config_from_args, make_cache
from analysis.errors import VariscopeError
from analysis.settings import TrainSettings, train_settings
from analysis.store.atomic import check_output, write_atomic
from analysis.store.jsonio import dumps, stamp
from analysis.training import STRATEGIES, RunMonitor, Selection, save_run, select, train


def register(sub) -> None:
    from analysis.training.config import DEFAULT_STEPS, TRAIN_DEFAULTS

    d = TRAIN_DEFAULTS
    p = sub.add_parser("train", help="partial fine-tuning with live metrics")
    add_data_args(p)
    p.add_argument(
        "--train-batch",
        type=int,
        default=d["train_batch"],
        help=f"examples per optimizer step, of all processes together (default {d['train_batch']}); "
        "--batch-size is the forward pass's, as for curve",
    )
    p.add_argument(
        "--strategy",
        default=None,
        choices=STRATEGIES,
        help="pick the selection: variability (argmin ν), top (top k) or full",
    )
    p.add_argument("--k", type=int, default=d["k"], help="number of tuned layers for --strategy")
    p.add_argument("--classifier-layer", type=int, default=d["classifier_layer"])
    p.add_argument("--tune-layers", default=None, help="comma-separated, e.g. 3,4")
    p.add_argument("--adapter", default=None, choices=["lora"])
    p.add_argument("--lora-r", type=int, default=d["lora_r"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=d["steps"], help=f"optimizer steps (default {DEFAULT_STEPS})")
    g.add_argument("--epochs", type=float, default=d["epochs"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument(
        "--train-seed",
        type=int,
        default=d["train_seed"],
        help="seed of the training (head, dropout, batch order) apart from the data sample's --seed (default --seed)",
    )
    p.add_argument("--eval-n", type=int, default=d["eval_n"])
    p.add_argument("--eval-every", type=int, default=d["eval_every"])
    p.add_argument("--remeasure", action="store_true", help="ν before/after training on the eval texts")
    p.add_argument(
        "--no-prefix-cache",
        action="store_true",
        help="run the frozen prefix at every step instead of once per text (for comparison)",
    )
    p.add_argument(
        "--full-vocab",
        action="store_true",
        help="when the embeddings train, train the whole matrix, not only the rows of the task's tokens",
    )
    p.add_argument("--save", default=None, help="folder for weights, results and a LoraConfig snippet")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run's own files in a non-empty --save folder (the rest stays)",
    )
    p.add_argument(
        "--log",
        "--log-file",
        dest="log",
        default=None,
        help="live metrics as JSON lines (--log-file under torchrun, whose own flags start with --log)",
    )
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_train)


def resolve_selection(a, cfg, train_set: TrainSettings, cache=None) -> tuple[Selection, str | None]:
    """Selection from --strategy or from --classifier-layer/--tune-layers.

    The variability strategy's curve goes through ``cache`` (``--cache-dir``, ``--no-cache``).
    """
    if a.strategy:
        from analysis.models.load import describe, resolve_model

        L = describe(resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache.root if cache else None))["layers"]
        curve = None
        if a.strategy == "variability":
            from analysis.pipeline import compute_curve

            curve = compute_curve(cfg, cache=cache, use_cache=not getattr(a, "no_cache", False))[0].variability
            L = len(curve) - 1
        return select(a.strategy, L, train_set.k, curve, adapter=a.adapter, lora_r=train_set.lora_r), a.strategy
    if train_set.classifier_layer is None:
        raise VariscopeError("give --classifier-layer K (and --tune-layers) or --strategy variability|top|full")
    try:
        tuned = tuple(int(x) for x in a.tune_layers.split(",")) if a.tune_layers else (train_set.classifier_layer,)
    except ValueError:
        raise VariscopeError(f"--tune-layers must be comma-separated layer numbers, got '{a.tune_layers}'") from None
    return Selection(train_set.classifier_layer, tuned, adapter=a.adapter, lora_r=train_set.lora_r), None


def check_train_outputs(a) -> None:
    """--save, --log and --json refused before any work (a non-empty --save folder needs --overwrite)."""
    check_output(a.save, folder=True, overwrite=a.overwrite, make_parents=True, what="--save")
    check_output(a.log, what="--log")
    check_output(a.json, what="--json")
    if a.json and a.log and Path(a.json).resolve() == Path(a.log).resolve():
        raise VariscopeError("--json and --log must be different files")


def cmd_train(a) -> int:
    """Train; under torchrun/accelerate every process trains and rank 0 alone writes and prints."""
    from analysis.distributed import ProcessError, RankFailure, check_launch, launch_env, lost_peer

    rank, world = launch_env()
    debug = bool(getattr(a, "debug", False)) or os.environ.get("VARISCOPE_DEBUG") == "1"
    if rank != 0:
        warnings.simplefilter("ignore")  # the other processes print errors only
    try:
        check_launch()
        cfg = config_from_args(a)
        train_set = train_settings(vars(a))  # every number checked before any data or model is loaded
        if train_set.train_batch % world:
            raise VariscopeError(
                f"--train-batch {train_set.train_batch} is the batch of all {world} processes together: "
                f"it must be a multiple of {world}"
            )
        if rank == 0:
            check_train_outputs(a)
    except VariscopeError:
        if rank != 0 and not debug:
            return 2  # every process refuses the same input: rank 0 says it once
        raise
    try:
        return _train(a, cfg, train_set)
    except RankFailure:
        return 2  # rank 0 failed and says why
    except Exception as e:
        if world == 1 or debug:
            raise
        if lost_peer(e):
            return 1  # another process failed first and says why
        if isinstance(e, VariscopeError) and rank == 0:
            raise
        why = str(e) if isinstance(e, VariscopeError) else f"{type(e).__name__}: {e}"
        raise ProcessError(f"process {rank} of {world}: {' '.join(why.split())}") from e


def _train(a, cfg, train_set: TrainSettings) -> int:
    from analysis.distributed import join, leave, on_rank0

    rank, world = join(cfg.device)
    ok = False
    try:
        sel, strategy = on_rank0(lambda: _prepare(a, cfg, train_set, world), rank, world)
        train_cfg = train_set.config(
            cfg,
            sel,
            remeasure=a.remeasure,
            strategy=strategy,
            prefix_cache=not a.no_prefix_cache,
            full_vocab=a.full_vocab,
        )
        if rank == 0 and world > 1:
            b = train_set.train_batch
            print(f"note: {world} processes, each step {b} texts = {world} × {b // world}", file=sys.stderr)
        if a.log and rank == 0:
            write_atomic(a.log, "")
        monitor = RunMonitor(log_path=a.log if rank == 0 else None)
        result, model = _run(train_cfg, monitor, bar=rank == 0, cache=make_cache(a))
        if rank == 0:
            if strategy == "variability":  # "auto" resolves per model: the record says which states chose ℓ*
                from analysis.pipeline import concrete

                result.layer_chosen_on = concrete(cfg, cache_root=make_cache(a).root).representation
            _write(a, result, model)
        ok = True
    finally:
        leave(wait=ok)
    if result.diverged:  # the files say "diverged": true; the exit status says it too
        if rank != 0:
            return 2
        raise VariscopeError(
            f"training diverged at step {result.diverged_at} (the loss is not finite), so the metrics above "
            f"are of a broken model; lower --lr ({result.lr:g})"
        )
    return 0


def _prepare(a, cfg, train_set: TrainSettings, world: int = 1) -> tuple[Selection, str | None]:
    """Rank 0's part before training: the model made ready, the selection (its curve cached).

    With several processes rank 0 also loads the data first (about a second): a bad task
    or column is reported once, and a dataset download happens once, before the others read it.
    """
    from analysis.cli.common import prepare_model
    from analysis.models.load import describe, resolve_model

    cache = make_cache(a)
    prepare_model(cfg.model, cache)
    sel, strategy = resolve_selection(a, cfg, train_set, cache)
    n_layers = describe(resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache.root))["layers"]
    if n_layers:
        sel.check(int(n_layers))  # fail before any work
    if world > 1:
        from analysis.training.data import split_train_eval

        split_train_eval(cfg, train_set.eval_n)
    return sel, strategy


def _run(train_cfg, monitor: RunMonitor, *, bar: bool, cache=None):
    """``train(train_cfg, monitor, cache=cache)`` with its time estimate and a progress bar on stderr when ``bar``."""
    from tqdm import tqdm

    b: dict = {}

    class _Watch(threading.Thread):
        def run(self):
            while monitor.running:
                p = monitor.snapshot()["progress"]
                if p["max_steps"]:
                    if "b" not in b:
                        b["b"] = tqdm(total=p["max_steps"], desc="training", unit="step", file=sys.stderr, leave=False)
                    b["b"].n = p["step"]
                    b["b"].refresh()
                time.sleep(0.5)

    if bar:
        _Watch(daemon=True).start()
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if bar else None  # the estimate, before the first step
    try:
        return train(train_cfg, monitor, progress=say, cache=cache)
    finally:
        if "b" in b:
            b["b"].close()


def _write(a, result, model) -> None:
    """Rank 0: the exports (--save, --json, each whole or not at all) and the summary line."""
    if a.save:
        save_run(result, a.save, model, overwrite=a.overwrite)
    out = result.to_dict()
    ev = ", ".join(f"{k} {v:.4f}" for k, v in out["eval"].items())
    w = out["world_size"]
    on = f" on {w} processes (batch {out['batch_size']} = {w} × {out['batch_size'] // w})" if w > 1 else ""
    print(
        f"{out['label']}"
        + (f" (ℓ* from ν on the {out['layer_chosen_on']} states)" if out.get("layer_chosen_on") else "")
        + f": {out['steps']} steps in {out['train_seconds']:.1f}s ({out['steps_per_second']:.2f} steps/s)"
        f"{on}; held-out {ev} ({out['eval_examples']} texts); trainable {out['trainable_params']:,} of "
        f"{out['total_params']:,} params; FLOPs vs full {out['flops_vs_full']:.2f}"
        + (" (stopped)" if out["stopped"] else "")
        + (f" (DIVERGED at step {out['diverged_at']})" if out["diverged"] else "")
        + (f"\n{out['held_out']}" if out.get("held_out") else "")
    )
    if a.json:
        write_atomic(a.json, dumps(stamp(out, device=out["device"], dtype=a.dtype), indent=2))
