"""docs/selectors.md from docs/selectors.json: merging sweeps, the numbers of the document, the evidence line."""

import json
import re

import numpy as np
import pytest
from _sweep_records import NEW_KEYS, old_format, record
from scipy.stats import spearmanr

from analysis.sweep.evidence import (
    PLANNED,
    counted,
    evidence_line,
    merge,
    missing_cells,
    model_family,
    precision_checks,
    read_book,
    record_dtype,
)
from analysis.sweep.report import doc_markdown
from conftest import ROOT

REAL_JSON, REAL_DOC = ROOT / "docs" / "selectors.json", ROOT / "docs" / "selectors.md"
ROW = re.compile(r"^\| `(\w+)` \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\d+) of (\d+) \|$")
REP = re.compile(r"^\| (\S+) · (\S+) \| (raw|final-norm) \| (\S+) \| (\S+) \| (\S+) \| (\S+) \|$")
RANDOM = re.compile(r"^\| \*a random layer \(expected\)\* \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) of (\d+) \|$")
PICK = re.compile(r"^\| `(\w+)` \| (\S+) \| (\S+) \| (\S+) \| (yes|no|–) \| (\S+) \|$")


@pytest.fixture
def book():
    b = {"sweeps": []}
    for model, task, n_layers, seed in (
        ("minilm", "rotten_tomatoes", 6, 1),
        ("minilm", "bbc_news", 6, 2),
        ("gemma3-270m", "rotten_tomatoes", 18, 3),
    ):
        b = merge(b, record(model, task, n_layers, seed=seed, final_norm=model_family(model) == "decoder"))
    return b


def _sections(doc: str) -> dict[str, list[str]]:
    """Heading text → the lines under it (up to the next heading)."""
    out, head = {}, None
    for line in doc.splitlines():
        if line.startswith("#"):
            head = line.lstrip("# ")
            out[head] = []
        elif head is not None:
            out[head].append(line)
    return out


def check_doc_against_json(doc: str, book: dict) -> int:
    """Every summary row and every selector row of ``doc`` against numbers recomputed here from ``book``.

    Returns how many numbers were compared (so a caller can require that some were).
    """
    sections, compared = _sections(doc), 0
    for fam in ("encoder", "decoder"):
        records = [r for r in counted(book) if model_family(r["model"]) == fam]
        heads = [h for h in sections if h.startswith(f"{fam.capitalize()}s (")]
        assert len(heads) == (1 if records else 0), heads
        if not records:
            continue
        rows = [m.groups() for line in sections[heads[0]] if (m := ROW.match(line))]
        assert rows, sections[heads[0]]
        for name, pairs, mean, worst, tied, of in rows:
            regrets = [r["selectors"][name]["regret"] for r in records if r["selectors"][name]["regret"] is not None]
            assert int(pairs) == int(of) == len(regrets)
            assert float(mean) == pytest.approx(np.mean(regrets), abs=5e-5)
            assert float(worst) == pytest.approx(max(regrets), abs=5e-5)
            assert int(tied) == sum(r["selectors"][name]["in_tied"] is True for r in records)
            compared += 4
        best = min(rows, key=lambda x: float(x[2]))[0]
        verdict = next(line for line in sections[heads[0]] if line.startswith("On the "))
        assert f"the lowest mean regret is `{best}`'s" in verdict
        # the baseline: a layer drawn uniformly, its expected regret and expected count of picks in the tied set
        (chance,) = [m.groups() for line in sections[heads[0]] if (m := RANDOM.match(line))]
        expected = [max(r["mean"]) - sum(r["mean"]) / len(r["mean"]) for r in records]
        in_tied = sum(len(r["tied_layers"]) / len(r["layers"]) for r in records)
        assert int(chance[0]) == int(chance[4]) == len(records)
        assert float(chance[1]) == pytest.approx(np.mean(expected), abs=5e-5)
        assert float(chance[2]) == pytest.approx(max(expected), abs=5e-5)
        assert float(chance[3]) == pytest.approx(in_tied, abs=0.05)
        worse = [name for name, _, mean, *_ in rows if float(mean) >= float(chance[1]) + 5e-5]
        assert all(f"`{w}`" in verdict.split("No better than a random layer:")[1] for w in worse)
        compared += 4
    for r in book["sweeps"]:
        dtype = "" if record_dtype(r) == "float32" else f", {record_dtype(r)}"
        lines = sections[f"{r['model']} · {r['task']} ({model_family(r['model'])}{dtype})"]
        assert any(f"Oracle layer **{r['oracle_layer']}**" in line and str(r["tied_layers"]) in line for line in lines)
        picks = {m.group(1): m.groups() for line in lines if (m := PICK.match(line))}
        assert set(picks) == set(r["selectors"])
        for name, s in r["selectors"].items():
            _, layer, _, regret, tied, rho = picks[name]
            assert layer == ("–" if s["layer"] is None else str(s["layer"]))
            assert regret == "–" if s["regret"] is None else float(regret) == pytest.approx(s["regret"], abs=5e-5)
            assert tied == ("–" if s["in_tied"] is None else "yes" if s["in_tied"] else "no")
            assert rho == "–" if s["spearman"] is None else float(rho) == pytest.approx(s["spearman"], abs=5e-3)
            compared += 4
            if s.get("scores") is not None:  # a record that stores the per-layer scores: its Spearman from them
                assert len(s["scores"]) == len(r["layers"])
                kept = [(a, b) for a, b in zip(s["scores"], r["mean"], strict=True) if a is not None]
                assert spearmanr(*zip(*kept, strict=True)).statistic == pytest.approx(s["spearman"])
                compared += 1
    return compared


def check_representations_against_json(doc: str, book: dict) -> int:
    """The decoders' raw / final-norm table of ``doc`` against means recomputed here from ``book``; the verdict."""
    lines = _sections(doc)["Raw states or through the final norm (decoders)"]
    rows = [m.groups() for line in lines if (m := REP.match(line))]
    both = [r for r in counted(book) if "final-norm" in r.get("selectors_by_representation", {})]
    assert len(rows) == 2 * len(both)
    compared, regrets = 0, {}
    for model, task, rep, nu_regret, nu_rho, mean_regret, mean_rho in rows:
        r = next(x for x in both if (x["model"], x["task"]) == (model, task))
        sel = r["selectors_by_representation"][rep]
        assert float(nu_regret) == pytest.approx(sel["nu_argmin"]["regret"], abs=5e-5)
        assert float(nu_rho) == pytest.approx(sel["nu_argmin"]["spearman"], abs=5e-3)
        mean = np.mean([s["regret"] for s in sel.values() if s["regret"] is not None])
        assert float(mean_regret) == pytest.approx(mean, abs=5e-5)
        rho = np.mean([s["spearman"] for s in sel.values() if s["spearman"] is not None])
        assert float(mean_rho) == pytest.approx(rho, abs=5e-3)
        regrets.setdefault(rep, []).append(mean)
        compared += 4
    verdict = next(line for line in lines if line.startswith(("Over the", "No decoder")))
    if not both:
        assert verdict == "No decoder measured yet on both representations."
    else:
        assert f"Over the {len(both)} decoder" in verdict
        assert all(f"{rep}: mean regret {np.mean(v):.4f}" in verdict for rep, v in regrets.items())
    return compared


def test_merge_replaces_the_same_model_task_and_settings_and_keeps_the_rest(book):
    again = record("minilm", "bbc_news", 6, seed=9)
    merged = merge(book, again)
    assert len(merged["sweeps"]) == 3 and again in merged["sweeps"]
    other = merge(book, record("minilm", "bbc_news", 6, seeds=(0,), seed=9))  # other settings: a new record
    assert len(other["sweeps"]) == 4
    order = [(r["model"], r["task"]) for r in merged["sweeps"]]
    assert order == sorted(order, key=PLANNED.index)  # the planned grid's order


def test_the_documents_numbers_are_the_jsons(book):
    doc = doc_markdown(book, "img")
    assert check_doc_against_json(doc, book) > 50
    assert check_representations_against_json(doc, book) == 8  # gemma: raw and final-norm
    assert "![minilm rotten_tomatoes](img/selectors-minilm-rotten_tomatoes.png)" in doc


def test_the_representation_verdict_names_the_better_one_and_old_records_still_make_the_document(book):
    gemma = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    by_rep = gemma["selectors_by_representation"]
    assert set(by_rep) == {"raw", "final-norm"} and by_rep["raw"] == gemma["selectors"]
    assert gemma["representation_default"] == "raw"
    # the invented final-norm ν is lowest at the trained peak: its regret is 0, the raw one's is not
    assert by_rep["final-norm"]["nu_argmin"]["regret"] == 0 < by_rep["raw"]["nu_argmin"]["regret"]
    lines = _sections(doc_markdown(book))["Raw states or through the final norm (decoders)"]
    verdict = next(line for line in lines if line.startswith("Over the 1 decoder (model, task) pair "))
    raw, normed = (np.mean([s["regret"] for s in by_rep[p].values() if s["regret"] is not None]) for p in by_rep)
    assert f"`{'final-norm' if normed < raw else 'raw'}` agrees better" in verdict or "neither" in verdict
    old = {"sweeps": [old_format(r) for r in book["sweeps"]]}
    assert not any(k in r for r in old["sweeps"] for k in NEW_KEYS)
    doc = doc_markdown(old)
    assert check_doc_against_json(doc, old) > 50 and check_representations_against_json(doc, old) == 0
    lines = _sections(doc)["Raw states or through the final norm (decoders)"]
    assert "No decoder measured yet on both representations." in lines
    one_only = [x for x in lines if x.startswith("Scored on one representation only")]
    assert len(one_only) == 1 and "gemma3-270m · rotten_tomatoes" in one_only[0]
    mixed = merge(old, gemma)  # an old record beside a new one: the table has the new one only
    assert check_representations_against_json(doc_markdown(mixed), mixed) == 8


def test_the_document_lists_the_missing_cells_of_the_planned_grid(book):
    missing = missing_cells(book)
    assert ("minilm", "rotten_tomatoes") not in missing and ("smollm2-135m", "bbc_news") in missing
    assert len(missing) == len(PLANNED) - 3
    line = next(x for x in doc_markdown(book).splitlines() if x.startswith("Planned, without"))
    assert all(f"{m} · {t}" in line for m, t in missing) and "minilm · bbc_news" not in line
    one_seed = merge({"sweeps": []}, record("mpnet", "rotten_tomatoes", 12, seeds=(0,)))
    assert ("mpnet", "rotten_tomatoes") in missing_cells(one_seed)  # a one-seed record is not the planned cell


def test_the_selectors_command_merges_and_writes_doc_and_plots_and_refuses_a_running_sweep(book, tmp_path, capsys):
    from analysis.cli.main import main

    files = []
    for i, r in enumerate(book["sweeps"]):
        files.append(tmp_path / f"sweep-{i}.json")
        files[-1].write_text(json.dumps(r))
    j, d, img = tmp_path / "selectors.json", tmp_path / "selectors.md", tmp_path / "img"
    argv = ["selectors", "--json", str(j), "--doc", str(d), "--img", str(img)]
    assert main([*argv, "--merge", *map(str, files)]) == 0
    assert read_book(j) == json.loads(json.dumps(book)) and d.read_text() == doc_markdown(book, "img")
    assert sorted(p.name for p in img.iterdir()) == sorted(
        f"selectors-{r['model']}-{r['task']}.png" for r in book["sweeps"]
    )
    running = tmp_path / "running.json"
    running.write_text(json.dumps({k: v for k, v in book["sweeps"][0].items() if k != "selectors"}))
    before = j.read_text()
    assert main([*argv, "--merge", str(files[0]), str(running)]) == 2
    assert "not a finished sweep record: no selectors" in capsys.readouterr().err
    assert j.read_text() == before  # nothing merged when one file is bad


def test_evidence_line_names_a_better_selector_for_the_family_and_is_silent_without_evidence(book):
    line = evidence_line("gemma3-270m", "argmin", book)
    assert line is not None and "`probe`" in line and "1 decoder sweep," in line and "docs/selectors.md" in line
    assert evidence_line("smollm2-135m", "argmin", book) == line  # the same family
    assert evidence_line("mpnet", "plateau", book) is not None  # encoders measured (minilm)
    assert evidence_line("my/local-model", "argmin", book) is None  # family unknown
    encoders = {"sweeps": [r for r in book["sweeps"] if r["model"] == "minilm"]}
    assert evidence_line("gemma3-270m", "argmin", encoders) is None  # no decoder evidence


def test_a_finished_sweep_record_is_found_again_by_its_settings(tmp_path):
    from _sweep_records import sweep_config

    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.store.cache import DiskCache
    from analysis.sweep.run import cached_record, save_record

    cache = DiskCache(tmp_path)
    cfg = AnalysisConfig(model="minilm", task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=60))
    rec = record("minilm", "rotten_tomatoes", 6)
    save_record(cfg, sweep_config(6), rec, cache)
    assert cached_record(cfg, sweep_config(6), cache) == json.loads(json.dumps(rec))
    assert cached_record(cfg, sweep_config(6, seeds=(0,)), cache) is None
    assert cached_record(AnalysisConfig(model="minilm", sampling=SampleConfig(n=61)), sweep_config(6), cache) is None


@pytest.mark.skipif(not REAL_JSON.exists(), reason="no docs/selectors.json yet")
def test_the_shipped_document_is_its_json_regenerated():
    book = read_book(REAL_JSON)
    doc = REAL_DOC.read_text()
    assert doc == doc_markdown(book, "img")
    compared = check_doc_against_json(doc, book)
    assert compared > 0 or not book["sweeps"]
    check_representations_against_json(doc, book)
    assert all(f"{m} · {t}" in doc for m, t in missing_cells(book))
    for c in precision_checks(book):  # the precision table's numbers are the records'
        line = next(x for x in _sections(doc)["Reduced precision"] if x.startswith(f"| {c['model']} · {c['task']} |"))
        assert f"| {c['spearman']:.2f} | {c['oracle']} ({c['oracle_float32']}) |" in line
        assert line.endswith("| yes |" if c["matches"] else "| **no** |")


def _in_precision(rec: dict, dtype: str, mean=None) -> dict:
    """``rec`` as if trained in ``dtype`` (its settings say so), with other per-layer means when given."""
    out = {**rec, "settings": {**rec["settings"], "dtype": dtype}}
    if mean is not None:
        out |= {"mean": mean, "oracle_layer": rec["layers"][int(np.argmax(mean))]}
    return out


def test_a_bfloat16_sweep_is_a_precision_check_beside_float32_and_stands_for_its_cell_alone(book):
    from analysis.sweep.evidence import counted, precision_checks, precision_vetted, summary
    from analysis.sweep.plots import plot_name

    gemma = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    close = _in_precision(gemma, "autocast-bfloat16", [m + 0.001 * (i % 2) for i, m in enumerate(gemma["mean"])])
    both = merge(book, close)
    assert len(both["sweeps"]) == len(book["sweeps"]) + 1  # other settings: kept beside the float32 record
    assert counted(both) == counted(book) and summary(both) == summary(book)  # the cell counts once, in float32
    [check] = precision_checks(both)
    assert check["spearman"] > 0.9 and check["matches"] and check["oracle_float32"] == gemma["oracle_layer"]
    assert precision_vetted(both, "gemma3-270m", "autocast-bfloat16")
    assert not precision_vetted(both, "smollm2-135m", "autocast-bfloat16")
    assert plot_name(close) != plot_name(gemma)

    flipped = _in_precision(gemma, "autocast-bfloat16", gemma["mean"][::-1])  # the ranking reversed
    [bad] = precision_checks(merge(book, flipped))
    assert bad["spearman"] < 0 and not bad["matches"]
    assert not precision_vetted(merge(book, flipped), "gemma3-270m", "autocast-bfloat16")

    # a cell with only a bfloat16 record counts that record; the doc says whether its model was vetted
    smol = _in_precision(record("smollm2-135m", "bbc_news", 18, seed=5, final_norm=True), "autocast-bfloat16")
    alone = merge(both, smol)
    assert smol in counted(alone) and ("smollm2-135m", "bbc_news") not in missing_cells(alone)
    sec = _sections(doc_markdown(alone))["Reduced precision"]
    assert any(line.startswith("| gemma3-270m · rotten_tomatoes | autocast-bfloat16 |") and line.endswith("| yes |")
               for line in sec)  # fmt: skip
    assert "- smollm2-135m · bbc_news stands on its autocast-bfloat16 record: **not vetted**" in "\n".join(sec)
    assert "Reduced precision" not in _sections(doc_markdown(book))


def test_the_sweeps_settings_name_the_precision_only_when_it_is_not_float32():
    from _sweep_records import make_record, sweep_config

    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig

    base = dict(model="minilm", task=TaskConfig("rotten_tomatoes"), sampling=SampleConfig(n=1200), device="cpu")
    assert "dtype" not in make_record(AnalysisConfig(**base), sweep_config(6))["settings"]
    assert "dtype" not in make_record(AnalysisConfig(**base, dtype="float32"), sweep_config(6))["settings"]
    # on a CPU, bfloat16 weights serve the selectors' states but the runs train in float32: the record says both
    cpu_bf16 = make_record(AnalysisConfig(**base, dtype="bfloat16"), sweep_config(6))["settings"]
    assert "dtype" not in cpu_bf16 and cpu_bf16["states_dtype"] == "bfloat16"


def test_the_sweeps_settings_name_an_autocast_run(monkeypatch):
    from _sweep_records import make_record, sweep_config

    import analysis.models.load as load
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig

    monkeypatch.setattr(load, "resolve_dtype", lambda dtype, device: "autocast-bfloat16")  # any CPU, bf16 or not
    cfg = AnalysisConfig(model="minilm", task=TaskConfig("rotten_tomatoes"), device="cpu", dtype="autocast-bfloat16")
    s = make_record(cfg, sweep_config(6))["settings"]
    assert s["dtype"] == "autocast-bfloat16" and "states_dtype" not in s


def test_a_cell_counts_its_float32_record_of_most_seeds(book):
    from analysis.sweep.evidence import counted

    one = record("minilm", "rotten_tomatoes", 6, seeds=(0,), seed=9)
    short_first = {"sweeps": [one, *book["sweeps"]]}  # a 1-seed record before the 3-seed one of the same cell
    cell = [r for r in counted(short_first) if (r["model"], r["task"]) == ("minilm", "rotten_tomatoes")]
    assert len(cell) == 1 and len(cell[0]["seeds"]) == 3
    assert ("minilm", "rotten_tomatoes") not in missing_cells(short_first)


def test_the_document_flags_a_record_whose_learning_rates_sit_mostly_at_a_grid_edge(book):
    from analysis.sweep.evidence import lr_edges

    rec = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    grid = sorted(rec["settings"]["lr_grid"])
    layers = len(rec["layers"])
    rec["lr"] = [grid[0]] * (layers - 5) + [grid[-1]] * 5
    assert lr_edges(rec) == {"low": layers - 5, "high": 5, "layers": layers, "grid": grid}
    doc = doc_markdown(book)
    assert f"chose its lowest rate ({grid[0]:g}) at {layers - 5} of {layers} layers" in doc
    rec["lr"] = [grid[1]] * layers  # the middle of the grid everywhere: nothing to flag
    assert lr_edges(rec)["low"] == lr_edges(rec)["high"] == 0
    assert "chose its" not in doc_markdown(book).split(f"## gemma3-270m · {rec['task']}")[1].split("\n## ")[0]


def test_the_evidence_line_reads_the_selectors_of_the_states_shown(book):
    from analysis.sweep.evidence import better_than_rule

    gemma = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    by_rep = gemma["selectors_by_representation"]
    for rep in ("raw", "final-norm"):
        ev = better_than_rule(book, "gemma3-270m", "argmin", rep)
        own = by_rep[rep]["nu_argmin"]["regret"]
        best = min(s["regret"] for s in by_rep[rep].values() if s["regret"] is not None)
        if own <= best:  # ν is already the best on these states: nothing to say
            assert ev is None and evidence_line("gemma3-270m", "argmin", book, rep) is None
        else:
            assert ev["rule_regret"] == own and ev["mean_regret"] == best
            assert f"{rep} states" in evidence_line("gemma3-270m", "argmin", book, rep)
    assert better_than_rule(book, "gemma3-270m", "argmin", "raw") != better_than_rule(
        book, "gemma3-270m", "argmin", "final-norm"
    )


def test_a_record_with_every_layer_tied_says_its_tied_set_tells_nothing(book):
    rec = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    section = lambda: doc_markdown(book).split(f"## gemma3-270m · {rec['task']}")[1].split("\n## ")[0]  # noqa: E731
    assert set(rec["tied_layers"]) != set(rec["layers"]) and "Every layer is tied" not in section()
    assert "every layer is tied with the oracle, so" not in doc_markdown(book)
    rec["tied_layers"] = list(rec["layers"])
    assert "Every layer is tied with the oracle: at 3 seed(s)" in section()
    summary = "In 1 of these pairs every layer is tied with the oracle, so there no regret is significant either"
    assert summary in doc_markdown(book)


def test_the_verdict_says_what_chance_scores_and_which_selectors_the_evidence_cannot_tell_apart(book):
    from analysis.sweep.evidence import family_records, random_layer, summary, verdict

    rec = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    layers = rec["layers"]
    rec["mean"] = [0.5 + 0.01 * i for i in range(len(layers))]  # the top layer best; the oracle follows
    rec["oracle_layer"], rec["tied_layers"] = layers[-1], layers[-2:]
    chance = random_layer([rec])
    assert chance["mean_regret"] == pytest.approx(0.01 * (len(layers) - 1) / 2)
    assert chance["in_tied"] == pytest.approx(2 / len(layers)) and chance["worst_regret"] == chance["mean_regret"]
    rows = [
        {"selector": "nu_argmin", "pairs": 1, "mean_regret": 0.0, "worst_regret": 0.0, "in_tied": 1},
        {"selector": "knn", "pairs": 1, "mean_regret": 0.01, "worst_regret": 0.01, "in_tied": 1},
        {"selector": "top", "pairs": 1, "mean_regret": 0.2, "worst_regret": 0.2, "in_tied": 0},
    ]
    text = verdict("decoder", rows, [rec])
    assert (
        "the lowest mean regret is `nu_argmin`'s" in text and f"expected regret of {chance['mean_regret']:.4f}" in text
    )
    assert "The 2 selectors whose pick lies in the tied set in every pair (`nu_argmin`, `knn`)" in text
    assert "favours them as a group over a random layer, not one of them over the rest" in text
    assert "No better than a random layer: `top`." in text
    rows[1]["mean_regret"] = 0.5  # now far apart: the sentence that they cannot be told apart goes
    assert "not told apart" not in verdict("decoder", rows, [rec])
    assert "random" not in verdict("decoder", rows)  # without records: no baseline to state
    assert summary(book)["decoder"] and family_records(book, "decoder") == [rec]


def test_the_evidence_line_says_when_the_better_selector_is_within_the_noise(book):
    from analysis.sweep.evidence import better_than_rule

    ev = better_than_rule(book, "gemma3-270m", "argmin")
    assert ev is not None and ev["noise"] > 0
    line = evidence_line("gemma3-270m", "argmin", book)
    within = ev["rule_regret"] - ev["mean_regret"] < ev["noise"]
    assert ("within one sweep's sampling noise" in line) == within
    rec = next(r for r in book["sweeps"] if r["model"] == "gemma3-270m")
    rec["selectors"]["nu_argmin"]["regret"] = ev["mean_regret"] + 2 * ev["noise"]  # ν far worse: no such caveat
    assert "within" not in evidence_line("gemma3-270m", "argmin", book)


def test_a_record_names_a_layer_that_shares_the_oracles_mean(book):
    rec = next(r for r in book["sweeps"] if r["model"] == "minilm")
    section = lambda: doc_markdown(book).split(f"## minilm · {rec['task']}")[1].split("\n## ")[0]  # noqa: E731
    i = rec["layers"].index(rec["oracle_layer"])
    other = next(x for x in rec["layers"] if x != rec["oracle_layer"])
    assert "the same mean" not in section()
    rec["mean"][rec["layers"].index(other)] = rec["mean"][i]
    assert f"Layer {other} has the same mean." in section()


def test_a_records_plot_draws_nu_beside_the_trained_curve_where_it_stores_the_scores(book):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.sweep.plots import draw_record

    rec = next(r for r in book["sweeps"] if r["model"] == "minilm")
    fig, ax = plt.subplots()
    draw_record(ax, rec)
    (twin,) = [a for a in fig.axes if a is not ax]
    (line,) = twin.get_lines()
    assert list(line.get_ydata()) == [-s for s in rec["selectors"]["nu_argmin"]["scores"]]
    assert twin.get_yscale() == "log" and "ν" in line.get_label()
    plt.close(fig)
    rec["selectors"]["nu_argmin"].pop("scores")  # a record made before the scores were stored: no ν curve
    fig, ax = plt.subplots()
    draw_record(ax, rec)
    assert fig.axes == [ax]
    plt.close(fig)
