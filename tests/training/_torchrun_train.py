"""Run by tests/training/test_training_dist.py, alone or under torchrun: ``python -m analysis`` with test-only changes.

    _torchrun_train.py [--no-dropout] [--fail-rank R] train ...

--no-dropout : every dropout of the classifier at p = 0, so that one process and several
               compute the same losses (up to the order of float sums);
--fail-rank R : process R raises RuntimeError("injected failure") at its third training batch.
"""

import os
import sys

from analysis.cli.main import main

args = sys.argv[1:]
if args and args[0] == "--no-dropout":
    args = args[1:]
    from torch import nn

    import analysis.training.model as model_module

    build = model_module.build_classifier

    def build_without_dropout(*a, **k):
        model = build(*a, **k)
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return model

    model_module.build_classifier = build_without_dropout

if args and args[0] == "--fail-rank":
    fail_rank, args = int(args[1]), args[2:]
    if int(os.environ.get("RANK", "0")) == fail_rank:
        import analysis.training.data as data_module

        collate, calls = data_module.collate, []

        def failing_collate(features):
            calls.append(1)
            if len(calls) == 4:  # the first call makes the probe batch of freeze_unused
                raise RuntimeError("injected failure")
            return collate(features)

        data_module.collate = failing_collate

sys.exit(main(args))
