"""A grid resumes from its results JSON alone: the runs it names by cache key go back into a cache that lacks them."""

from __future__ import annotations

from analysis.reproduce.runs import REPRO_VERSION
from analysis.store.cache import DiskCache

#: what a results dict adds to a cached run: its place in the grid, not the run (the key leaves out the strategy)
LABELS = ("task", "model", "strategy", "k", "seed", "identical_to_top", "run_key")


def restore_runs(res: dict, cache: DiskCache) -> int:
    """Put the runs of a results dict (docs/reproduction.json) that name their cache key (``run_key``) back into
    ``cache`` where it lacks them, so a grid resumes from what the JSON holds even without the cache it was run
    with. A final run comes back whole; a learning-rate trial as what the search reads (its metric on the
    validation split, final loss, steps). Returns how many were restored; nothing is trained or overwritten."""
    n = 0
    for r in res.get("runs", []):
        if r.get("run_key") and cache.load("runs", r["run_key"], version=REPRO_VERSION) is None:
            rec = {k: v for k, v in r.items() if k not in LABELS}
            cache.save("runs", r["run_key"], {}, blobs={"record": rec}, version=REPRO_VERSION, meta={"restored": True})
            n += 1
    for r in res.get("lr_search", []):
        if r.get("run_key") and cache.load("runs", r["run_key"], version=REPRO_VERSION) is None:
            rec = {"metric": r["metric"], "metric_value": r["val_metric"], "eval": {r["metric"]: r["val_metric"]},
                   "final_loss": r.get("final_loss"), "steps": r["steps"]}  # fmt: skip
            cache.save("runs", r["run_key"], {}, blobs={"record": rec}, version=REPRO_VERSION, meta={"restored": True})
            n += 1
    return n
