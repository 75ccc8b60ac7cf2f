"""Run by tests/stream/test_streaming.py under torchrun: the curve command, with the model load failing on rank 1 only.

The failure is made here, in test code (the library has no switch for it): rank 1's
``load_for`` raises, as a broken disk or a missing GPU would, while rank 0 runs its pass.
"""

import os
import sys

from analysis.stream import curve as streamcurve

if os.environ.get("RANK") == "1":

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure: the model cannot be loaded")

    streamcurve.load_for = broken

from analysis.cli.main import main

sys.exit(main(sys.argv[1:]))
