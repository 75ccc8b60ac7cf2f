"""Several processes read fixed rows: the training shards, the evaluation's share, the prefix lookup by run ids."""

import numpy as np
import pytest
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from analysis.errors import VariscopeError
from analysis.training.data import RankShards, eval_rows, rank_rows
from analysis.training.prefix import PrefixStates


def _read(n: int, sampler, batch: int, world: int, rank: int, epoch: int) -> list[list[int]]:
    """The batches process ``rank`` reads in ``epoch``: accelerate's own sharding, as the Trainer's loader has it."""
    dl = DataLoader(list(range(n)), batch_size=batch, sampler=sampler)
    dl = prepare_data_loader(dl, num_processes=world, process_index=rank, put_on_device=False)
    dl.set_epoch(epoch)
    return [b.tolist() for b in dl]


@pytest.mark.parametrize(("n", "world", "batch"), [(64, 2, 4), (65, 2, 4), (50, 3, 8), (5, 2, 4)])
def test_each_process_reads_its_own_fixed_shard_in_every_epoch(n, world, batch):
    shards = RankShards(n, world, batch, seed=3)
    own = [set(shards.shard(r).tolist()) for r in range(world)]
    assert set().union(*own) == set(range(n)) and sum(len(o) for o in own) == n  # disjoint, every row
    orders = []
    for epoch in range(3):
        read = [_read(n, shards, batch, world, r, epoch) for r in range(world)]
        assert len({len(b) for b in read}) == 1 and all(len(x) == batch for b in read for x in b)  # same steps
        for r in range(world):
            assert set(sum(read[r], [])) == own[r]  # its own rows, all of them, in every epoch
        orders.append(read[0])
    assert orders[0] != orders[1] != orders[2]  # reshuffled within the shard every epoch
    assert _read(n, shards, batch, world, 1, 1) == _read(n, shards, batch, world, 1, 1)  # seeded: the same again


def test_one_process_reading_the_shards_order_takes_the_same_examples_per_step():
    """The order deals the shards step by step: one process with the global batch sees the union of the
    processes' batches at every step (how the torchrun test compares one process with two)."""
    shards = RankShards(64, 2, 4, seed=0)
    one = _read(64, shards, 8, 1, 0, 1)
    two = [_read(64, shards, 4, 2, r, 1) for r in range(2)]
    assert [sorted(b) for b in one] == [sorted(a + b) for a, b in zip(*two, strict=True)]


def test_fewer_texts_than_processes_are_refused():
    with pytest.raises(VariscopeError, match="3 training texts cannot be shared by 4 processes"):
        RankShards(3, 4, 2, seed=0)


@pytest.mark.parametrize("n", [37, 150, 200])
def test_each_process_evaluates_the_rows_accelerate_deals_it(n):
    """37 texts (one batch): both processes read every row (the second one's batch is padding); 150: each reads
    its batches and the first rows that complete the last, fewer than all."""
    rows = [eval_rows(n, 2, r, 64) for r in range(2)]
    for r in range(2):
        read = sorted(set(sum(_read(n, None, 64, 2, r, 0), [])))
        assert read == rows[r].tolist()
    assert set(rows[0].tolist()) | set(rows[1].tolist()) == set(range(n))
    if n > 128:
        assert max(len(x) for x in rows) < n


def test_rank_rows_count_every_process():
    shards = RankShards(65, 2, 4, seed=0)
    rr = rank_rows(shards, 150, 1, 64)
    assert (rr.rank, rr.world) == (1, 2) and np.array_equal(rr.train, shards.shard(1))
    assert rr.per_rank == {"train": [33, 32], "eval": [86, 86]} and len(rr.eval) == 86


def test_prefix_states_map_run_ids_to_the_rows_held():
    rows = np.array([1, 4, 6])
    lengths = np.array([2, 3, 1])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    states = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)  # row k of text j: offsets[j] + k
    p = PrefixStates(states, offsets, rows=rows)
    out = p.batch([6, 1], 3).numpy()
    np.testing.assert_array_equal(out[0], [[10, 11], [0, 0], [0, 0]])  # text 6: local 2, one token
    np.testing.assert_array_equal(out[1], [[0, 1], [2, 3], [0, 0]])  # text 1: local 0, two tokens
    with pytest.raises(RuntimeError, match=r"texts \[5\] are not among the 3"):
        p.batch([4, 5], 3)
    whole = PrefixStates(states, offsets)  # one process: run ids are local ids
    np.testing.assert_array_equal(whole.batch([2], 1).numpy(), [[[10, 11]]])
