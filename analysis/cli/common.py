"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from analysis.settings import DEFAULT_TASK, DEFAULTS, from_settings

BATCH_HELP = "texts per forward pass (default 32 on a CPU, 256 on a GPU)"


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Model, task, sampling and extraction flags shared by curve, cards and train (defaults: settings.DEFAULTS)."""
    from analysis.models.hidden_states import POOLINGS, REPRESENTATION_CHOICES

    d = DEFAULTS
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=d["model"], help="offline name (minilm, mpnet), folder or HF id")
    g.add_argument("--revision", default=d["revision"], help="hub revision of the model (default main)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code (off by default)")
    g.add_argument(
        "--task", default=d["task"], help=f"offline task, GLUE task or HF dataset id (default {DEFAULT_TASK})"
    )
    g.add_argument("--data", default=d["data"], help="CSV/TSV/JSONL file instead of --task")
    g.add_argument("--text-col", default=d["text_col"])
    g.add_argument("--text-pair-col", default=d["text_pair_col"])
    g.add_argument("--label-col", default=d["label_col"])
    g.add_argument("--hf-config", default=d["hf_config"], help="configuration (subset) of an HF dataset")
    g.add_argument("--bins", type=int, default=d["bins"], help="bin a numeric label into K quantile classes")
    g.add_argument("--split", default=d["split"])
    s = p.add_argument_group("sampling")
    s.add_argument(
        "--n",
        "--num-texts",
        dest="n",
        type=int,
        default=d["n"],
        help=f"texts in total, stratified (default {d['n']}; 0 = all)",
    )
    s.add_argument("--per-class", type=int, default=d["per_class"], help="cap per class")
    s.add_argument("--seed", type=int, default=d["seed"])
    s.add_argument("--imbalance", default=d["imbalance"], help="class ratios, e.g. 1:9")
    s.add_argument("--fraction", type=float, default=d["fraction"], help="keep this fraction of each class")
    e = p.add_argument_group("extraction")
    e.add_argument("--max-length", type=int, default=d["max_length"])
    e.add_argument("--pooling", default=d["pooling"], choices=POOLINGS)
    e.add_argument(
        "--representation",
        default=d["representation"],
        choices=REPRESENTATION_CHOICES,
        help="raw (the residual stream), final-norm (decoders: every layer through the final norm, as the truncated "
        "classifier sees it) or auto (final-norm where the model has a final norm, raw elsewhere; the default)",
    )
    e.add_argument("--batch-size", type=int, default=d["batch_size"], help=BATCH_HELP)
    e.add_argument("--device", default=d["device"], help="auto, cpu, cuda, cuda:N, mps")
    e.add_argument(
        "--dtype",
        default=d["dtype"],
        help="auto, float32, bfloat16, float16, autocast-bfloat16 (float32 weights, bfloat16 compute; opt-in, "
        "on CPUs and GPUs with native bfloat16)",
    )
    e.add_argument(
        "--device-map",
        default=d["device_map"],
        choices=["auto"],
        help="spread a model too large for one GPU over the available devices (accelerate)",
    )
    e.add_argument("--cache-dir", default=None, help="default $VARISCOPE_CACHE or ./cache")
    e.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def config_from_args(a):
    """The AnalysisConfig of parsed data flags (through the shared settings layer)."""
    return from_settings(vars(a))


def make_cache(a):
    from analysis.store.cache import DiskCache, check_cache_dir

    root = a.cache_dir or os.environ.get("VARISCOPE_CACHE")
    if root:
        check_cache_dir(root)
    return DiskCache(root)


def prepare_model(name: str, cache) -> None:
    """Assemble/convert an offline GGUF model once, with progress bars, before the real work."""
    from tqdm import tqdm

    from analysis.models.registry import locate, needs_preparation

    if not needs_preparation(name, cache.root):
        return
    print(
        f"preparing {name} once (join, verify, convert to a Hugging Face folder in {cache.root}/models)",
        file=sys.stderr,
    )
    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            unit = "B" if stage == "assembling" else "step"
            bars[stage] = tqdm(total=total, desc=stage, unit=unit, unit_scale=stage == "assembling", file=sys.stderr)
        bars[stage].n = done
        bars[stage].refresh()

    try:
        locate(name, cache.root, progress)
    finally:
        for b in bars.values():
            b.close()


def tqdm_progress(desc: str, unit: str = "text"):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (closed when done)."""
    from tqdm import tqdm

    bar: dict = {}

    def cb(done, total):
        if "b" in bar and done < bar["b"].n:  # a new pass (two-pass mode): a new bar
            bar["b"].close()
            del bar["b"]
        if "b" not in bar:
            bar["b"] = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)
        bar["b"].n = done
        bar["b"].refresh()
        if done >= total:
            bar["b"].close()

    return cb


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``error: ...``, exit 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        from analysis.errors import VariscopeError

        self.exit(2, f"error: {self.prog}: {VariscopeError(message).message} (see {self.prog} --help)\n")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one ``warning: ...`` line, never a source line or a traceback."""
    from analysis.errors import VariscopeError

    print(f"warning: {VariscopeError(str(message)).message}", file=file or sys.stderr)


OUTPUT_FLAGS = ("json", "csv", "log", "doc", "save", "plots", "img")  # paths a subcommand writes
INPUT_FLAGS = ("data", "model")  # paths a subcommand reads (a model only where it is a local folder)


def check_paths(a) -> None:
    """Before any work: no path name over the file system's limit, no output aimed at an input or at another output.

    Every subcommand goes through here (:func:`analysis.cli.main.main`), so a new output flag is
    covered by adding its name to ``OUTPUT_FLAGS``. ``reproduce --json`` is read back on purpose
    (resume) and is an input of nothing else.
    """
    from analysis.store.atomic import check_distinct, check_path_name

    outs = {f"--{k}": v for k in OUTPUT_FLAGS if isinstance(v := getattr(a, k, None), str)}
    ins = {f"--{k}": v for k in INPUT_FLAGS if isinstance(v := getattr(a, k, None), str)}
    for k, v in {**outs, **ins}.items():
        check_path_name(v, f"{k} '{v[:60]}…'" if len(v) > 60 else f"{k} '{v}'")
    if "--model" in ins and not os.path.isdir(os.path.expanduser(ins["--model"])):
        del ins["--model"]  # a registry name or hub id, not a path
    check_distinct(outs, ins, folders=("--save", "--plots", "--img"))
