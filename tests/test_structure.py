"""The shape of the code: one-way imports, no import circles, small modules and functions.

Read from the source with ``ast`` (nothing is imported), so these run in the fast tier.
"""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
# Longer on purpose, with the reason. Keep this list short.
LONG_OK: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for analysis/, pages/ and app.py."""
    out = {"app": ROOT / "app.py"}
    for folder in ("analysis", "pages"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (top level or inside functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:  # a name imported from a module counts as that module
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a parent package is not a dependency
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {n: _imports(n, p, set(mods)) for n, p in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None (iterative DFS, colours)."""
    colour = dict.fromkeys(graph, 0)
    for start in graph:
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_has_no_circle():
    graph = _graph()
    assert "analysis.cli" in graph and "analysis.pipeline" in graph["analysis.cli.curve"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_library_never_imports_the_cli_or_the_pages():
    library = [
        m for m in _graph() if m.startswith("analysis") and not m.startswith(("analysis.cli", "analysis.__main__"))
    ]
    bad = [
        (m, t)
        for m, deps in _graph().items()
        if m in library
        for t in deps
        if t.startswith(("analysis.cli", "pages", "app"))
    ]
    assert not bad, bad


def test_no_streamlit_in_the_library():
    for f in (ROOT / "analysis").rglob("*.py"):
        tree = ast.parse(f.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "streamlit"], f


def _long_functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                yield node.name, n


@pytest.mark.parametrize("folder", ["analysis", "pages"])
def test_modules_and_functions_stay_small(folder):
    too_long = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        rel = str(f.relative_to(ROOT))
        lines = len(f.read_text().splitlines())
        if folder == "analysis" and lines > MAX_MODULE_LINES and rel not in LONG_OK:
            too_long.append(f"{rel}: {lines} lines")
        too_long += [f"{rel}:{name}: {n} lines" for name, n in _long_functions(f) if f"{rel}:{name}" not in LONG_OK]
    assert not too_long, too_long


def _literal_argparse_defaults(path: Path):
    """(flag's dest, line) of each ``add_argument(..., default=<number or string>)`` in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        default = kw.get("default")
        if not isinstance(default, ast.Constant) or isinstance(default.value, bool) or default.value is None:
            continue
        if "dest" in kw and isinstance(kw["dest"], ast.Constant):
            dest = kw["dest"].value
        else:
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest = next((f for f in flags if f.startswith("--")), flags[0] if flags else "").lstrip("-")
        yield dest.replace("-", "_"), node.lineno


def test_literal_argparse_defaults_are_found():
    tmp = ROOT / "tests" / "_literal_defaults_probe.py"
    src = 'p.add_argument("--seed", type=int, default=0)\np.add_argument("--x", default=None)\n'
    src += 'p.add_argument("--num", dest="n", default=5)\np.add_argument("--device", default=D["device"])\n'
    try:
        tmp.write_text(src)
        assert list(_literal_argparse_defaults(tmp)) == [("seed", 1), ("n", 3)]
    finally:
        tmp.unlink()


def test_no_argparse_default_repeats_a_setting_as_a_literal():
    """Every default settings defines (or training.config for ``train``) is read from there, not typed again."""
    from analysis.settings import CURVE_DEFAULTS, DEFAULTS
    from analysis.training.config import TRAIN_DEFAULTS

    shared = set(DEFAULTS) | set(CURVE_DEFAULTS)
    typed = [
        f"{f.relative_to(ROOT)}:{line} --{dest}"
        for f in sorted((ROOT / "analysis" / "cli").glob("*.py"))
        for dest, line in _literal_argparse_defaults(f)
        if dest in shared or (f.name == "train.py" and dest in TRAIN_DEFAULTS)
    ]
    assert not typed, typed


def test_the_library_configs_default_to_the_settings():
    """AnalysisConfig cannot import settings (settings builds it): its defaults are the same values, checked here."""
    from dataclasses import MISSING, fields

    from analysis.pipeline import AnalysisConfig
    from analysis.settings import DEFAULTS

    shared = {f.name: f.default for f in fields(AnalysisConfig) if f.name in DEFAULTS and f.default is not MISSING}
    assert {"model", "pooling", "max_length", "dtype", "representation"} <= set(shared)
    assert shared == {k: DEFAULTS[k] for k in shared}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses(path: Path, mods: set[str]) -> list[str]:
    """``from m import _x`` and ``m._x`` in ``path`` where ``m`` is one of the project modules ``mods``."""
    tree = ast.parse(path.read_text())
    aliases, bad = set(), []  # aliases: local names bound to project modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in mods:
                    aliases.add(a.asname or a.name)
                elif node.module in mods and _private(a.name):
                    bad.append(f"{path.name}:{node.lineno}: {a.name} from {node.module}")
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.asname and a.name in mods}
    for node in ast.walk(tree):
        is_module = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
        if is_module and _private(node.attr):
            bad.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return bad


def test_no_private_name_is_imported_from_another_module():
    """A name that another module uses is public. Module paths may start with ``_`` (``pages/_common.py``):
    the rule is about the names in them."""
    mods = _modules()
    bad = [b for path in mods.values() for b in _private_uses(path, set(mods))]
    assert not bad, bad


def test_the_private_name_rule_sees_both_spellings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from analysis.variability import _nu, variability\nfrom analysis.data import tasks\ntasks._name(1)\n")
    found = _private_uses(f, {"analysis.variability", "analysis.data", "analysis.data.tasks"})
    assert [b.split(": ")[1] for b in found] == ["_nu from analysis.variability", "tasks._name"]


def test_torch_distributed_has_one_home():
    allowed = ROOT / "analysis" / "distributed.py"
    found = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "torch.distributed" or n.startswith("torch.distributed.") for n in names) and path != allowed:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_analysis_top_level_is_small_and_each_name_says_one_thing():
    """At most 25 entries at the top of analysis/; no two top-level modules (files or folders) share the first
    word of their name (before the first ``_``), so one concern has one home (``__init__``/``__main__`` aside)."""
    entries = [p for p in (ROOT / "analysis").iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 25, sorted(p.name for p in entries)
    modules = [
        p.stem if p.is_file() else p.name
        for p in entries
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and not p.name.startswith("__")
    ]
    first: dict[str, list[str]] = {}
    for m in modules:
        first.setdefault(m.split("_")[0], []).append(m)
    assert not {w: ms for w, ms in first.items() if len(ms) > 1}


def test_lower_layers_never_import_the_pipeline():
    """data/, models/ and store/ sit below the pipeline: it imports them, never the other way round."""
    graph = _graph()
    lower = ("analysis.data", "analysis.models", "analysis.store")
    bad = [(m, t) for m, deps in graph.items() if m.startswith(lower) for t in deps if t == "analysis.pipeline"]
    assert not bad, bad
