"""The information subcommands: ``cache`` (list, clear), ``models`` and ``tasks``."""

from __future__ import annotations

import json

from analysis.cli.common import make_cache
from analysis.errors import VariscopeError


def cmd_cache(a) -> int:
    cache = make_cache(a)
    if a.action == "list":
        rows = cache.entries()
        total = sum(r["bytes"] for r in rows)
        for r in rows:
            print(f"{r['kind']:<12} {r['key']}  {r['bytes'] / 2**20:8.2f} MB  {r['describe']}")
        for kind in sorted({r["kind"] for r in rows}):
            mine = [r["bytes"] for r in rows if r["kind"] == kind]
            print(f"{kind:<12} {len(mine)} entries, {sum(mine) / 2**20:.2f} MB")
        print(f"{len(rows)} entries, {total / 2**20:.2f} MB in {cache.root}")
        print(
            f"budget {cache.budget / 1e9:g} GB (CACHE_BUDGET_BYTES in analysis/store/cache.py): least recently used "
            "entries go after each write, prefix states first"
        )
    else:
        n = cache.clear(kind=a.kind, key=a.key)
        print(f"deleted {n} entries from {cache.root}")
    return 0


def cmd_models(a) -> int:
    from analysis.models.registry import registry_status

    rows = registry_status(make_cache(a).root)
    if a.json:
        keys = ("name", "installed", "layers", "hidden_size", "params", "licence", "install", "path", "kind", "title")
        print(json.dumps([{k: r[k] for k in keys} for r in rows], indent=2))
        return 0
    for r in rows:
        state = ("ready" if r["path"] else "installed") if r["installed"] else f"not installed: {r['install']}"
        print(
            f"{r['name']:<12} {r['layers']:>2} layers  d={r['hidden_size']:<4} {r['params'] / 1e6:6.1f}M params  "
            f"{r['kind']:<18}  {state}"
        )
        print(
            f"{'':<12} {r['title']}; licence: {r['licence']}" + (f"\n{'':<12} folder: {r['path']}" if r["path"] else "")
        )
    print("Also: any local model folder, or any Hugging Face model id (needs the hub or its local cache).")
    print(
        "Sentence-embedding models separate texts best at their top layer; a raw model (gemma3-270m) shows "
        "a middle layer that already separates the classes."
    )
    return 0


def cmd_tasks(a) -> int:
    from analysis.data.tasks import GLUE, OFFLINE, TaskConfig, load_task

    for name, (_pkg, title) in OFFLINE.items():
        try:
            t = load_task(TaskConfig(name=name))
            state = f"{len(t)} train texts, {len(t.label_names)} classes"
        except VariscopeError as e:
            state = str(e)
        print(f"{name:<18} {title:<55} {state}")
    print(f"GLUE (needs the hub or its cache): {', '.join(GLUE)}; any HF dataset id; --data FILE.")
    return 0


def register(sub) -> None:
    from analysis.store.cache import KINDS

    k = sub.add_parser("cache", help="list or clear the disk cache")
    k.add_argument("action", choices=["list", "clear"])
    k.add_argument("--kind", default=None, choices=KINDS)
    k.add_argument("--key", default=None, help="key prefix")
    k.add_argument("--cache-dir", default=None)
    k.set_defaults(func=cmd_cache)

    m = sub.add_parser("models", help="offline models: layers, size, licence, installed or not")
    m.add_argument("--json", action="store_true", help="print the table as a JSON list")
    m.add_argument("--cache-dir", default=None)
    m.set_defaults(func=cmd_models)
    t = sub.add_parser("tasks", help="offline tasks")
    t.set_defaults(func=cmd_tasks)
