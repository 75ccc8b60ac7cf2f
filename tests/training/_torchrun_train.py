"""Run by tests/training/test_training_dist.py, alone or under torchrun: ``python -m analysis`` with test-only changes.

    _torchrun_train.py [--no-dropout] [--shards W] [--report-prefix DIR] [--fail-rank R] train ...

--no-dropout : every dropout of the classifier at p = 0, so that one process and several
               compute the same losses (up to the order of float sums);
--shards W : one process reads the training texts in the order of W processes' fixed shards
             (analysis.training.data.RankShards), so it takes the examples W processes take per step;
--report-prefix DIR : each process writes DIR/rank<R>.json: the run ids and the number of texts its
             frozen-prefix states hold (training and held-out);
--fail-rank R : process R raises RuntimeError("injected failure") at its third training batch.
"""

import json
import os
import sys
from pathlib import Path

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

if args and args[0] == "--shards":
    shard_world, args = int(args[1]), args[2:]
    import analysis.training.trainer as trainer_module
    from analysis.training.data import RankShards

    make_plan = trainer_module.make_plan

    def make_plan_with_shards(cfg, tok, world_size=1, rank=0):
        plan = make_plan(cfg, tok, world_size, rank)
        plan.shards = RankShards(len(plan.train_data), shard_world, plan.batch_size // shard_world, cfg.seed)
        return plan

    trainer_module.make_plan = make_plan_with_shards

if args and args[0] == "--report-prefix":
    report, args = Path(args[1]), args[2:]
    import analysis.training.prefix as prefix_module

    prepare = prefix_module.prepare

    def prepare_and_report(model, plan, *a, **k):
        record = prepare(model, plan, *a, **k)
        held = {}
        for part, p in (("train", plan.prefix_tr), ("eval", plan.prefix_ev)):
            if p is None:  # the cache was not used
                continue
            n = len(p.offsets) - 1
            held[part] = {"texts": n, "ids": list(range(n)) if p.rows is None else p.rows.tolist()}
        rank = os.environ.get("RANK", "0")
        (report / f"rank{rank}.json").write_text(json.dumps(held))
        return record

    prefix_module.prepare = prepare_and_report

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
