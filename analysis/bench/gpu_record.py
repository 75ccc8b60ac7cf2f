"""``make gpu-record`` (``python -m analysis bench --gpu-record``): every GPU section of the bench in one
command of at most five minutes, on a machine with one CUDA GPU and nothing but this working tree.

No data wheel, model file or network is needed: the texts, the tokenizer and the models are
made on the spot (:mod:`analysis.bench.synthetic`): a randomly initialised 12-layer d = 768
BERT-like encoder (the model of every section) and a decoder shaped like Gemma 3 270M (a second
model for the curve). Versions are printed first, so a record from a bare machine (another
Python, an older transformers) says what it ran on.

Each section runs in its own process (``python -m analysis.bench.gpu_record SPEC``) under a time
box (:data:`BUDGET_S`, and never past :data:`TOTAL_S` from the start): one that overruns or fails
is noted under ``skipped`` and the record goes on. The results are those of ``bench`` (same keys,
same report) plus ``gpu_record``: the versions, models, texts and budgets.

:data:`CPU_ENV` ``=1`` (tests only) runs the same plan on the CPU with tiny models.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.bench import synthetic
from analysis.bench.common import REPO_ROOT, BenchSettings, row
from analysis.errors import VariscopeError

#: The sections a GPU changes, in the order they run, and each one's time box in seconds.
BUDGET_S: dict[str, float] = {"curve": 50, "encoder": 75, "stream": 40, "cards": 45, "training": 60}
#: Sections measured at their quick sizes (the others at the full run's; a GPU makes those seconds).
QUICK = {"curve", "encoder"}
TOTAL_S = 300.0  # the whole record, model building included
TEXTS = 12_000  # rows of the synthetic texts file (the encoder section reads up to 12,000)
CPU_ENV = "VARISCOPE_GPU_RECORD_CPU"
TINY_BUDGET_S = 900.0  # per section on the CPU (tests): a shared 2-core machine, never the cause of a failure


@dataclass(frozen=True)
class RecordSettings:
    """only : a subset of :data:`BUDGET_S`'s sections (None: all). reps : repetitions (None: each section's)."""

    only: tuple[str, ...] | None = None
    reps: int | None = None

    def check(self) -> RecordSettings:
        unknown = set(self.only or ()) - set(BUDGET_S)
        if unknown:
            raise VariscopeError(
                f"the GPU record has no section(s) {', '.join(sorted(unknown))}; use {', '.join(BUDGET_S)}"
            )
        if self.reps is not None and self.reps < 1:
            raise VariscopeError(f"--reps must be at least 1, got {self.reps}")
        return self


def versions() -> dict:
    """Python, torch, CUDA, transformers and numpy versions, and the CUDA device's name (None without one)."""
    import numpy
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "devices": torch.cuda.device_count() if cuda else 0,
    }


def tiny() -> bool:
    """Whether the record runs its plan on the CPU with tiny models (tests only)."""
    return os.environ.get(CPU_ENV) == "1"


def prepare(folder: str, r: RecordSettings) -> tuple[BenchSettings, dict]:
    """Texts file, tokenizer and random models in ``folder``; the settings every section runs with, and
    what was made (for the results)."""
    import transformers

    from analysis.bench.encoder import random_encoder

    transformers.utils.logging.disable_progress_bar()  # saving shards: a bar per model, noise in the record's log
    small = tiny()
    vocab = synthetic.words()
    tok = synthetic.tokenizer(os.path.join(folder, "tokenizer"), vocab)
    data = synthetic.write_texts(os.path.join(folder, "synthetic.csv"), 2_000 if small else TEXTS, vocab)
    layers, d = (2, 32) if small else (12, 768)
    encoder = random_encoder(os.path.join(folder, "encoder"), tok, layers=layers, d=d)
    names = {encoder: f"random BERT {layers}x{d}", data: "synthetic"}
    made: dict = {"encoder": names[encoder], "texts": {"rows": 2_000 if small else TEXTS, "vocabulary": len(tok)}}
    curve_models = [encoder]
    try:
        shape = synthetic.GEMMA3_TINY if small else synthetic.GEMMA3_270M
        decoder = synthetic.gemma3_decoder(os.path.join(folder, "decoder"), tok, shape)
        names[decoder] = f"random Gemma-3 {shape['num_hidden_layers']}x{shape['hidden_size']}"
        curve_models.append(decoder)
        made["decoder"] = names[decoder]
    except ImportError as e:  # transformers before 4.50 has no Gemma 3
        made["decoder"] = f"not built: {e}"
    s = BenchSettings(
        model=encoder,
        device="cpu" if small else "cuda",
        reps=1 if small and r.reps is None else r.reps,
        data=data,
        curve_models=tuple(curve_models),
        encoder_shape=(layers, d),
        names=tuple(names.items()),
    )
    return s, made


def run_boxed(s: BenchSettings, name: str, seconds: float, folder: str) -> tuple[dict, str | None]:
    """Section ``name`` in a fresh process, stopped after ``seconds``: (its part of the results, why it has none)."""
    out = os.path.join(folder, f"{name}.json")
    spec = {"section": name, "out": out, "settings": dataclasses.asdict(s)}  # s.quick: this section's sizes
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "analysis.bench.gpu_record", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, timeout=seconds)
    except subprocess.TimeoutExpired:
        return {}, f"{name}: stopped at its time box of {seconds:.0f} s"
    if p.returncode != 0 or not os.path.isfile(out):
        return {}, f"{name}: failed (exit code {p.returncode}; its output is above)"
    return json.loads(Path(out).read_text(encoding="utf-8")), None


def record(r: RecordSettings, command: str) -> dict:
    """The GPU record: versions printed, sections run one by one in their time boxes, results returned.

    A VariscopeError (one line) where there is no CUDA GPU, before anything is built.
    """
    from analysis.bench.run import add_part, machine

    start = time.monotonic()
    v = versions()
    row("versions", ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "cuda", "transformers", "numpy")))
    row("device", f"{v['device']} ({v['devices']} CUDA devices)" if v["device"] else "no CUDA device")
    small = tiny()
    if v["device"] is None and not small:
        raise VariscopeError(
            f"no CUDA GPU here (torch {v['torch']}, built for CUDA {v['cuda']}): the GPU record needs one; "
            "`python -m analysis bench --quick` measures on the CPU"
        )
    with tempfile.TemporaryDirectory(prefix="variscope-gpu-record-") as folder:
        s, made = prepare(folder, r)
        row("prepared", f"{made['encoder']}, {made['decoder']}, {made['texts']['rows']:,} synthetic texts")
        sections = [n for n in BUDGET_S if not r.only or n in r.only]
        quick = {n: small or n in QUICK for n in sections}
        res: dict = {"command": command, "quick": all(quick.values()), "machine": machine(s)}
        boxes = {n: TINY_BUDGET_S if small else BUDGET_S[n] for n in sections}
        for name in sections:
            left = TOTAL_S - (time.monotonic() - start)
            if left < 5 and not small:
                add_part(res, {"skipped": [f"{name}: not started, the record's {TOTAL_S:.0f} s were spent"]})
                continue
            t = time.perf_counter()
            box = boxes[name] if small else min(boxes[name], left)
            part, why = run_boxed(dataclasses.replace(s, quick=quick[name]), name, box, folder)
            add_part(res, part if why is None else {"skipped": [why]})
            if why is None:
                res.setdefault("section_seconds", {})[name] = time.perf_counter() - t
    res["gpu_record"] = {
        "versions": v,
        "made": made,
        "budgets_s": boxes,
        "total_budget_s": TOTAL_S,
        "quick_sections": [n for n in sections if quick[n]],
        "tiny_cpu_test": small,
        "seconds": time.monotonic() - start,
    }
    res["notes"] = notes(res["gpu_record"])
    return res


def notes(g: dict) -> list[str]:
    """The report's lines about the record: versions, what was made, time boxes (Markdown)."""
    v = g["versions"]
    boxes = ", ".join(f"{n} {b:.0f} s" for n, b in g["budgets_s"].items())
    return [
        f"GPU record (`make gpu-record`) in {g['seconds']:.0f} s: Python {v['python']}, torch {v['torch']} "
        f"(CUDA {v['cuda']}), transformers {v['transformers']}, numpy {v['numpy']}, on {v['device'] or 'the CPU'}.",
        "",
        f"Models made on the spot with random weights: {g['made']['encoder']} (every section) and "
        f"{g['made']['decoder']} (the curve); texts: {g['made']['texts']['rows']:,} synthetic texts of Zipf-drawn "
        f"pseudo-words ({g['made']['texts']['vocabulary']:,}-token vocabulary), about as long as Rotten Tomatoes "
        f"snippets. Quick sizes: {', '.join(g['quick_sections']) or 'none'}. Time boxes: {boxes} "
        f"(at most {g['total_budget_s']:.0f} s in all)."
        + (" **A test run on the CPU with tiny models, not a record.**" if g["tiny_cpu_test"] else ""),
    ]


def run_section(spec: dict) -> None:
    """In the section's own process: run it with the spec's settings and write its part as JSON."""
    from analysis.bench.run import SECTIONS

    d = spec["settings"]
    s = BenchSettings(
        **{
            **d,
            "only": None,
            "curve_models": tuple(d["curve_models"]),
            "encoder_shape": tuple(d["encoder_shape"]),
            "names": tuple(tuple(p) for p in d["names"]),
        }
    )
    part = SECTIONS[spec["section"]](s)
    Path(spec["out"]).write_text(json.dumps(part, default=float), encoding="utf-8")


if __name__ == "__main__":
    run_section(json.loads(sys.argv[1]))
