"""Command line: ``python -m analysis {curve,cards,cache,models,tasks,bench,train,reproduce,sweep,selectors}``.

Errors a user can cause print one line on stderr and exit with code 2
(``--debug`` shows the traceback). Subcommands are imported explicitly: a
broken module fails loudly instead of dropping its command.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from analysis.cli import bench, cards, curve, info, reproduce, selectors, sweep, train
from analysis.cli.common import OneLineParser, check_paths, show_warning
from analysis.distributed import ProcessError, launch_env
from analysis.errors import VariscopeError


def main(argv=None) -> int:
    p = OneLineParser(
        prog="variscope" if Path(sys.argv[0]).name == "variscope" else "python -m analysis",
        description="Variscope: which layers of a language model already separate a task's classes.",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    curve.register(sub)
    info.register(sub)
    cards.register(sub)
    bench.register(sub)
    train.register(sub)
    reproduce.register(sub)
    sweep.register(sub)
    selectors.register(sub)

    a = p.parse_args(argv)
    debug = a.debug or os.environ.get("VARISCOPE_DEBUG") == "1"
    if not debug:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = show_warning
            check_paths(a)
            return a.func(a)
    except VariscopeError as e:
        if debug:
            raise
        if _rank() == 0 or isinstance(e, ProcessError):  # under torchrun: the same bad input everywhere, one line
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _rank() -> int:
    """This process's rank under a launcher (torchrun, accelerate, MPI); 0 alone or when the variables are bad."""
    try:
        return launch_env()[0]
    except VariscopeError:
        return 0
