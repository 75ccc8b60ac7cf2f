"""``python -m analysis selectors``: merge finished sweeps into docs/selectors.json and regenerate docs/selectors.md."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.store.atomic import check_output, write_atomic


def register(sub) -> None:
    p = sub.add_parser(
        "selectors",
        help="merge sweep records (sweep --json) into docs/selectors.json and regenerate docs/selectors.md",
    )
    p.add_argument(
        "--merge",
        nargs="*",
        default=[],
        metavar="SWEEP_JSON",
        help="finished sweep records to add (each replaces a record of the same model, task and settings)",
    )
    p.add_argument("--json", default="docs/selectors.json")
    p.add_argument("--doc", default="docs/selectors.md")
    p.add_argument("--img", default="docs/img")
    p.add_argument("--no-plots", action="store_true", help="rewrite the document only (keep the plots)")
    p.set_defaults(func=cmd_selectors)


def cmd_selectors(a) -> int:
    from analysis.sweep.evidence import check_record, merge, missing_cells, read_book, read_json
    from analysis.sweep.report import write_doc

    check_output(a.json, what="--json")
    check_output(a.doc, what="--doc")
    check_output(a.img, folder=True, what="--img", make_parents=True)
    fresh = not Path(a.json).exists()
    book = read_book(a.json)
    # every file is read and checked before anything is written: a bad one leaves the book as it was
    records = [check_record(read_json(path, "the sweep record"), path) for path in a.merge]
    for r in records:
        book = merge(book, r)
        print(f"merged {r['model']} · {r['task']} ({len(r['seeds'])} seed(s), {len(r['layers'])} layers)")
    if records or fresh:  # a first run writes the (empty) book the document is made from
        write_atomic(a.json, json.dumps(book, indent=1))
    write_doc(book, a.doc, a.img, plots=not a.no_plots)
    missing = missing_cells(book)
    print(f"{a.doc}: {len(book['sweeps'])} sweep(s); planned cells still missing: {len(missing)}")
    return 0
