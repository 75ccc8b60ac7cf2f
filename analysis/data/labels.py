"""Labels of a task: which rows are kept, and their classes (one-line errors for labels that cannot be classes)."""

from __future__ import annotations

import json
import math

import numpy as np

from analysis.data.files import shown
from analysis.errors import VariscopeError


def finish_labels(labels, empty, names, cfg, info: dict):
    """Which rows a task keeps and their classes, from the raw labels and which texts are empty.

    ``cfg``: the task's :class:`~analysis.data.tasks.TaskConfig` (its ``label_col`` and ``bins``).

    Returns (kept row positions, class indices of those rows, class names, info with the
    warnings). :func:`load_task` and the streamed files (:mod:`analysis.data.streamed`) share it.
    """
    info = dict(info)
    warnings = list(info.get("warnings", []))
    n_in = len(labels)
    label_strs: list[str | int | float | None] = []
    blank = 0
    kinds = _LabelKinds(cfg.label_col) if names is None else None  # declared classes: one kind already
    for i, y in enumerate(labels):
        if y is None or (isinstance(y, float) and math.isnan(y)) or str(y).strip() in ("", "nan", "NaN", "None"):
            label_strs.append(None)
            blank += 1
        else:
            if kinds is not None:
                kinds.check(i, y)
            label_strs.append(str(y).strip() if not isinstance(y, (int, float)) else y)
    if blank == n_in:
        raise VariscopeError(f"the label column '{cfg.label_col}' is empty (all {n_in} values are blank or NaN)")
    keep = [i for i in range(n_in) if label_strs[i] is not None]
    if blank:
        warnings.append(f"dropped {blank} row(s) with a blank label")
    n_empty = sum(1 for i in keep if empty[i])
    if n_empty:
        keep = [i for i in keep if not empty[i]]
        warnings.append(f"dropped {n_empty} empty or whitespace-only text(s)")
    if not keep:
        raise VariscopeError("no usable rows: every text is empty or every label is blank")
    y, names = _encode_labels([label_strs[i] for i in keep], names, cfg)
    info.update(warnings=warnings, dropped_empty=n_empty, dropped_blank_label=blank, n_rows=n_in)
    return np.asarray(keep, dtype=np.int64), y, names, info


class _LabelKinds:
    """Refuses labels that are JSON objects or lists, and labels whose type changes within the data.

    Types: a number (a JSON number, or text that reads as one: ``1``, ``0.5``, ``inf``), a
    true/false value, or text. Two types in one column (``pos``/``neg`` above, ``0``/``1`` below,
    as when two files are joined) would silently become one class per spelling.
    """

    def __init__(self, col: str):
        self.col = col
        self.first: tuple[int, object, str] | None = None  # (row, label, type) of the first label
        self.memo: dict[str, str] = {}  # type of each text label seen (most columns repeat a few values)

    def check(self, i: int, y) -> None:
        if isinstance(y, dict | list):
            raise VariscopeError(
                f"the label of data row {i + 1} is a JSON {'object' if isinstance(y, dict) else 'list'} "
                f"({shown(json.dumps(y), 40)}); labels must be text or numbers"
            )
        k = self.memo.get(y) if isinstance(y, str) else None
        if k is None:
            k = _label_kind(y)
            if isinstance(y, str) and len(self.memo) < 100_000:
                self.memo[y] = k
        if self.first is None:
            self.first = (i, y, k)
        elif k != self.first[2]:
            j, y0, k0 = self.first
            raise VariscopeError(
                f"the label column '{shown(self.col)}' changes type at data row {i + 1}: {shown(repr(y), 40)} is "
                f"{k}, but the labels above it are {k0} (data row {j + 1}: {shown(repr(y0), 40)}); give every "
                "row a label of one type (data rows count from 1; the header and blank lines are not counted)"
            )


def _label_kind(y) -> str:
    if isinstance(y, bool):
        return "true/false"
    if isinstance(y, int | float):
        return "a number"
    try:
        float(str(y))
    except ValueError:
        return "text"
    return "a number"


def _encode_labels(vals, names, cfg):
    if names is not None:
        index = {n: i for i, n in enumerate(names)}
        present = [n for n in names if n in set(vals)]
        if len(present) < len(names):  # keep the declared order, drop absent classes
            index = {n: i for i, n in enumerate(present)}
            names = present
        return np.array([index[v] for v in vals], dtype=np.int64), list(names)
    as_num = _as_numbers(vals)
    finite = as_num is not None and all(isinstance(x, int) or math.isfinite(x) for x in as_num)
    if as_num is not None and cfg.bins and not finite:
        raise VariscopeError(
            f"the label column '{shown(cfg.label_col)}' holds infinite numbers; binning (--bins) needs finite values"
        )
    if as_num is not None and finite:  # 'inf', '1e400': names, not numbers
        integral = all(isinstance(x, int) or float(x).is_integer() for x in as_num)
        if cfg.bins:
            nums = np.array([float(x) for x in as_num])
            if cfg.bins < 2:
                raise VariscopeError(f"--bins must be at least 2, got {cfg.bins}")
            edges = np.unique(np.quantile(nums, np.linspace(0, 1, cfg.bins + 1)[1:-1]))
            y = np.searchsorted(edges, nums, side="right")
            bounds = np.concatenate([[nums.min()], edges, [nums.max()]])
            names = [
                f"[{bounds[i]:.3g}, {bounds[i + 1]:.3g}{']' if i == len(edges) else ')'}" for i in range(len(edges) + 1)
            ]
            return y.astype(np.int64), names
        if not integral:
            raise VariscopeError(
                f"the label column '{cfg.label_col}' holds non-integer numbers (a regression "
                f"target); ν needs classes: pass --bins K to bin it into K quantile classes"
            )
        ints = sorted({int(x) for x in as_num})  # Python ints: 2**53 and 2**53 + 1 stay two classes
        pos = {u: i for i, u in enumerate(ints)}
        return np.array([pos[int(x)] for x in as_num], dtype=np.int64), [str(u) for u in ints]
    strs = sorted(set(map(str, vals)))
    at = {u: i for i, u in enumerate(strs)}
    return np.array([at[str(v)] for v in vals], dtype=np.int64), strs


def _as_numbers(vals) -> list[int | float] | None:
    """Every value as a number (an integer exactly, never through float), or None if one is not a number."""
    out: list[int | float] = []
    for v in vals:
        if isinstance(v, bool):
            return None  # true/false are class names
        if isinstance(v, int | float):
            out.append(v)
            continue
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                return None
    return out
