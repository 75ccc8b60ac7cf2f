"""The texts of a sample without holding them all: two passes over a data file or a streamed dataset.

:func:`open_sample` reads only what the sampling needs first, the labels (and whether each
text is empty, a rule of :func:`analysis.data.tasks.load_task`): they give the class sizes n_c
and, through :func:`analysis.data.sampling.sample_index`, the very rows that the in-memory path
(:func:`analysis.data.tasks.load_sample`) picks. :meth:`SampleSource.texts` then reads the
source again and yields the chosen texts in order, for
:func:`analysis.models.hidden_states.for_each_pooled` to batch chunk by chunk.

Sources: a ``--data`` file (CSV/TSV/JSONL, :class:`analysis.data.files.TableFile`, no size
limit), a Hugging Face dataset or GLUE task loaded with ``streaming=True``, and for everything
else (offline packaged tasks, uploaded bytes) the in-memory sample itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from analysis.data.files import TableFile
from analysis.data.sampling import check_thinned, compact_classes, sample_index
from analysis.data.tasks import TaskConfig, check_columns, finish_labels, hf_spec, task_kind
from analysis.errors import VariscopeError

Rows = Callable[[], Iterator[tuple[str, str | None, object]]]  # a fresh pass: (text, pair, raw label)


@dataclass
class SampleSource:
    """A sample known by its labels; its texts are read on demand.

    labels : class index of every sampled text, in sample order (N,);
    label_names : the C classes; info : source, warnings, counts of dropped rows;
    streamed : whether the texts are read from the source again (False: held in memory).
    """

    labels: np.ndarray
    label_names: list[str]
    info: dict
    has_pairs: bool
    streamed: bool
    _read: Callable[[np.ndarray], Iterator[tuple[str, str | None]]]

    def __len__(self) -> int:
        return len(self.labels)

    def texts(self, positions: np.ndarray) -> tuple[Iterator[str], Iterator[str] | None]:
        """Iterators over the texts (and pairs) at the sorted sample ``positions``, in that order."""
        rows = self._read(np.asarray(positions, dtype=np.int64))
        if not self.has_pairs:
            return (t for t, _ in rows), None
        a, b = itertools.tee(rows)  # consumed in lockstep (zip): tee holds one row
        return (t for t, _ in a), (p or "" for _, p in b)


def open_sample(cfg, content: bytes | None = None, *, streaming: bool = True) -> SampleSource:
    """The sample of ``cfg`` (an :class:`~analysis.pipeline.AnalysisConfig`), labels first.

    With ``streaming``, a data file without ``content`` and a Hugging Face dataset are read
    twice instead of held; everything else is sampled in memory as the default path does.
    """
    kind = task_kind(cfg.task)
    if streaming and kind == "file" and content is None:
        rows, names, info = _file_rows(cfg.task)
    elif streaming and kind in ("hf", "glue"):
        rows, names, info = _hf_rows(cfg.task, kind)
    else:
        return _in_memory(cfg, content)
    return _two_pass(rows, names, info, cfg)


def _in_memory(cfg, content: bytes | None) -> SampleSource:
    from analysis.data.tasks import load_sample

    sub = load_sample(cfg.task, cfg.sampling, content)
    pairs = sub.pairs

    def read(positions: np.ndarray) -> Iterator[tuple[str, str | None]]:
        return ((sub.texts[i], None if pairs is None else pairs[i]) for i in positions)

    return SampleSource(sub.labels, list(sub.label_names), sub.info, pairs is not None, False, read)


def _two_pass(rows: Rows, names: list[str] | None, info: dict, cfg) -> SampleSource:
    """Pass 1 over ``rows``: labels and empty flags → kept rows → the sample's rows (same as in memory)."""
    labels: list = []
    empty: list[bool] = []
    seen: dict = {}
    pairs = False
    first = RowDigest()
    for text, pair, y in rows():
        first.add(text, pair, y)
        labels.append(seen.setdefault(y, y) if isinstance(y, str) else y)  # one string per class value
        empty.append(not text.strip() and (pair is None or not pair.strip()))
        pairs = pairs or pair is not None
    keep, y, names, info = finish_labels(labels, empty, names, cfg.task, info)
    del labels, empty
    idx, info = sample_index(y, len(names), cfg.sampling, info)
    if len(idx) == 0:
        raise VariscopeError("the sample is empty")
    check_thinned(y, y[idx], list(names), cfg.sampling)
    sample_labels, names = compact_classes(y[idx], list(names))
    from analysis.variability import class_index

    class_index(sample_labels, names)
    raw = keep[idx]  # row numbers in the source, ascending

    def read(positions: np.ndarray) -> Iterator[tuple[str, str | None]]:
        want = raw[positions]
        if len(want) == 0:
            return
        j, again = 0, RowDigest()
        for i, (text, pair, y) in enumerate(rows()):
            again.add(text, pair, y)  # every row, to the end: the whole source must be the one pass 1 saw
            if j < len(want) and i == want[j]:
                yield text, pair
                j += 1
        first.check(again)

    return SampleSource(sample_labels, names, info, pairs, True, read)


class RowDigest:
    """Row count and a hash of every row (text, pair, raw label with its type) of one pass over a source.

    A later pass that differs (the file was replaced, edited or shuffled while it was read) is an
    error before anything computed from it is cached: ν from the rows of one file and the labels of
    another would otherwise be stored under the first file's fingerprint.
    """

    def __init__(self) -> None:
        import hashlib

        self.h = hashlib.blake2b(digest_size=16)
        self.n = 0

    def add(self, text: str, pair: str | None, y: object) -> None:
        p = "\x00" if pair is None else f"{len(pair)}:{pair}"
        self.h.update(f"{len(text)}:{text}|{p}|{type(y).__name__}:{y!r}\n".encode("utf-8", "surrogatepass"))
        self.n += 1

    def check(self, later: RowDigest) -> None:
        if later.n != self.n or later.h.digest() != self.h.digest():
            what = f"{later.n} rows where the first pass read {self.n}" if later.n != self.n else "other rows"
            raise VariscopeError(
                f"the data changed while it was read: a later pass saw {what} (labels or texts differ); "
                "nothing was cached; run it again once the file stays put"
            )


def _s(v) -> str:
    return "" if v is None else str(v)


def _file_rows(task: TaskConfig) -> tuple[Rows, None, dict]:
    table = TableFile(task.data or "")
    info: dict = {"source": task.data, "warnings": list(table.warnings)}

    def rows() -> Iterator[tuple[str, str | None, object]]:
        cols: dict = {}  # every row's keys, in order: a JSON row may lack one the others have
        for r in table.rows():
            if not cols and not table.json:  # a CSV's rows all have the header's keys: refused at once
                check_columns(list(r), task)
            if len(r) > len(cols) or not cols.keys() >= r.keys():
                cols.update(dict.fromkeys(r))
            pair = _s(r.get(task.text_pair_col)) if task.text_pair_col else None
            yield _s(r.get(task.text_col)), pair, r.get(task.label_col)
        info["columns"] = check_columns(list(cols), task)

    return rows, None, info


def _hf_rows(task: TaskConfig, kind: str) -> tuple[Rows, list[str] | None, dict]:
    """A dataset read with ``streaming=True``: rows with a hidden label (−1) are skipped, as in memory."""
    from analysis.data import tasks

    path, config, split, text_col, pair_col, label_col = hf_spec(task, kind)
    ds = tasks.hf_load(path, config, split, streaming=True)
    feat = (getattr(ds, "features", None) or {}).get(label_col)
    names = list(feat.names) if feat is not None and hasattr(feat, "names") else None
    info: dict = {"source": f"{task.name} ({split})"}

    def rows() -> Iterator[tuple[str, str | None, object]]:
        first = True
        for r in _iterate(ds, path):
            if first:
                info["columns"] = _hf_columns(list(r.keys()), (text_col, label_col, pair_col), task.name)
                first = False
            y = r.get(label_col)
            if names is not None:
                if y is None or int(y) < 0:
                    continue
                y = names[int(y)]
            yield _s(r.get(text_col)), (_s(r.get(pair_col)) if pair_col else None), y
        if first:
            raise VariscopeError(f"split '{split}' of dataset '{shown_name(path)}' has no rows")

    return rows, names, info


def _iterate(ds, path: str) -> Iterator[dict]:
    """Rows of a streamed dataset; a failing read is one line."""
    it = iter(ds)
    while True:
        try:
            r = next(it)
        except StopIteration:
            return
        except (ConnectionError, OSError, ValueError) as e:
            raise VariscopeError(
                f"reading dataset '{shown_name(path)}' failed: {(str(e).splitlines() or [type(e).__name__])[0][:200]}"
            ) from None
        yield r


def _hf_columns(cols: list, wanted: tuple, name) -> list:
    for role, col in zip(("text", "label", "text pair"), wanted, strict=True):
        if col and col not in cols:
            raise VariscopeError(f"{role} column '{col}' not found in '{name}'; the columns are: {', '.join(cols)}")
    return cols


def shown_name(path: str) -> str:
    from analysis.data.files import shown

    return shown(path)
