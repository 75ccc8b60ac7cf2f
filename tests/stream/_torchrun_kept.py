"""Run by tests/stream/test_streaming.py under torchrun: a streamed curve with a state sample, rank 0 writes JSON."""

import json
import sys

from analysis import AnalysisConfig, SampleConfig, TaskConfig
from analysis.distributed import join, leave
from analysis.stream.curve import stream_curve

rank, world = join("cpu")
cfg = AnalysisConfig(
    model="minilm", task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=31, seed=3), batch_size=4, device="cpu"
)
res = stream_curve(cfg, rank=rank, world_size=world, keep=6)
s = res.stats.kept
assert s.states is not None
if rank == 0:
    out = {"variability": res.curve.variability, "index": s.index.tolist(), "states": s.states.tolist()}
    with open(sys.argv[1], "w") as f:
        json.dump({**out, "world_size": world, "rows": res.rows}, f)
leave()
