"""The pages' computations: the cached model loader, states (in memory or streamed), curves, progress and errors.

Numerics live in analysis/; this module decides what to cache across reruns and sessions,
draws progress, and turns a failure into one line on the page.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace

import streamlit as st

from analysis.errors import VariscopeError
from analysis.recommend import DEFAULT_TOLERANCE
from pages._state import analysis_config, upload_bytes


@st.cache_resource(show_spinner=False, max_entries=2)  # model_loader's spinner names the model
def _load_model(
    source: str, name: str, location: str, fingerprint: str, revision, device: str, dtype: str, trust: bool
):
    from analysis.models.load import ModelRef, load_model

    return load_model(
        ModelRef(name, source, location, fingerprint, revision), device=device, dtype=dtype, trust_remote_code=trust
    )


def model_loader(ref, device, dtype, trust):
    """Loader for analysis.get_states, cached across reruns and sessions (keys are primitives).

    On a page it says "Loading <model>…" while it loads (a cached model returns before a spinner
    shows); in a training run's worker thread, which draws nothing, it loads silently.
    """
    with st.spinner(f"Loading {ref.name}…") if _on_page() else nullcontext():
        return _load_model(
            ref.source, ref.name, ref.location, ref.fingerprint, ref.revision, device, dtype, bool(trust)
        )


def _on_page() -> bool:
    """True in a page's script run (which can draw), False in a worker thread."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx(suppress_warning=True) is not None


def states_message(cfg) -> str:
    """What the pages say while a sample's states are computed, e.g. "Computing states for 600 texts…"."""
    s = cfg.sampling
    n = f"{s.n:,} texts" if s.n else f"at most {s.per_class:,} texts per class" if s.per_class else "every text"
    return f"Computing states for {n} of {cfg.task.label()} with {cfg.model}…"


def prepare_model_ui(name: str) -> None:
    """Join, verify and convert an offline GGUF model once, inside a status box with progress."""
    from analysis.models.registry import locate, needs_preparation
    from analysis.store.cache import DiskCache

    root = DiskCache().root
    if not needs_preparation(name, root):
        return
    with st.status(f"Preparing {name} once: joining, verifying and converting its GGUF…", expanded=True) as box:
        bar = st.progress(0.0)

        def progress(stage, done, total):
            bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{stage}: {done}/{total}")

        locate(name, root, progress)
        box.update(label=f"{name} is ready (converted into {root}/models)", state="complete", expanded=False)


def streaming_settings() -> tuple[int, int]:
    """(threshold, states kept K) of the session, checked by :func:`analysis.settings.stream_settings`."""
    from analysis.settings import stream_settings

    ss = st.session_state
    return stream_settings(ss.get("stream_above"), ss.get("sample_keep"))


def _digest(content: bytes | None) -> str:
    import hashlib

    return "" if content is None else hashlib.sha256(content).hexdigest()


@st.cache_data(show_spinner=False, max_entries=64)
def _streams(cfg_repr: str, threshold: int, digest: str, _cfg, _content) -> bool:
    from analysis.stream.kept import needs_streaming

    return needs_streaming(_cfg, threshold, _content)


@st.cache_resource(show_spinner=False, max_entries=2)
def _streamed(key: str, _label: str, _cfg, _keep: int, _content, _ran: dict):
    """The streamed result of ``key`` (exact ν, a sample's states), shared across reruns and sessions.

    Its progress bar is created here (a cached function may only draw into its own elements):
    replayed, then emptied, on a hit.
    """
    from analysis.store.cache import DiskCache
    from analysis.stream.kept import stream_kept

    _ran["streamed"] = True  # not set on a hit
    bar = st.progress(0.0, text=f"{_label}…")
    try:
        return stream_kept(
            _cfg,
            keep=_keep,
            content=_content,
            progress=texts_progress(bar, _label),
            loader=model_loader,
            cache=DiskCache(),
        )
    finally:
        bar.empty()


def texts_progress(bar, what: str):
    """A ``progress(done, total)`` drawing texts done, rate and ETA into ``bar`` (``st.progress`` or ``st.empty``)."""
    t0 = time.perf_counter()

    def show(done, total):
        el = time.perf_counter() - t0
        rate = done / el if el else 0
        eta = (total - done) / rate if rate else 0
        bar.progress(done / total, text=f"{what}: {done}/{total} texts · {rate:.0f} texts/s · ETA {eta:.0f}s")

    return show


def _states_or_sample(cfg, bar, label):
    """In-memory states, or above the session's threshold the streamed result with a seeded sample."""
    from analysis.pipeline import get_states
    from analysis.store.cache import DiskCache
    from analysis.stream.kept import kept_key

    content = upload_bytes()
    above, keep = streaming_settings()
    if _streams(repr(cfg), above, _digest(content), cfg, content):
        key = kept_key(cfg, keep, content, DiskCache().root)
        ran: dict = {}
        res = _streamed(key, f"{label} (streaming: ν of every text, {keep:,} kept)", cfg, keep, content, ran)
        return replace(res, cache_hit=res.cache_hit or not ran)  # shallow: the cached arrays are shared, unchanged
    with st.spinner(states_message(cfg)):  # a cached sample returns before it shows
        return get_states(cfg, content=content, progress=texts_progress(bar, label), loader=model_loader)


def show_error(e: BaseException) -> None:
    """One line on the page: a VariscopeError's message, or the kind of an unexpected failure (details in the log)."""
    if isinstance(e, VariscopeError):
        st.error(str(e))
        return
    import traceback

    traceback.print_exc()
    st.error(f"unexpected error ({type(e).__name__}): {str(e).splitlines()[0][:300] if str(e) else ''}")


def get_states_ui(cfg=None, *, label="Computing hidden states"):
    """States for the current settings with a live progress bar; None after an error.

    Above the session's ``stream_above`` texts: a :class:`~analysis.stream.kept.KeptStates`
    (ν of every text, the states of a seeded sample of ``sample_keep``).
    """
    bar = st.empty()
    try:
        cfg = cfg or analysis_config()
        prepare_model_ui(cfg.model)
        res = _states_or_sample(cfg, bar, label)
    except Exception as e:  # a VariscopeError, or an unexpected failure: one line on the page
        bar.empty()
        show_error(e)
        return None
    bar.empty()
    return res


@st.cache_data(show_spinner="Computing ν per layer and its bootstrap resamples…", max_entries=32)
def curve_for(key: str, bootstrap: int, weighting: str, seed: int, _res, tolerance: float = DEFAULT_TOLERANCE):
    """ν per layer of the states under ``key``, its band and ℓ* shares (a sample's, for a streamed result)."""
    from analysis.stream.kept import curve_of

    return curve_of(_res, bootstrap=bootstrap, weighting=weighting, seed=seed, tolerance=tolerance).to_dict()


def page_states(min_layer: int = 0):
    """The states of the current settings, with the shared layer defaulting to the recommendation.

    Stops the page (with a link to Setup) when they cannot be had. Returns (cfg, states, curve, best).
    """
    from analysis.recommend import recommend_layer

    try:
        cfg = analysis_config()
    except VariscopeError as e:
        st.error(str(e))
        cfg = None
    res = get_states_ui(cfg) if cfg is not None else None
    if res is None:
        st.page_link("pages/setup.py", label="Fix the settings on the Setup page", icon=":material/tune:")
        st.stop()
    curve = curve_for(res.key, 0, "equal", cfg.sampling.seed, res)
    best = recommend_layer(curve["variability"])
    layer = st.session_state.get("layer")
    if layer is None or not min_layer <= int(layer) <= res.n_layers:
        st.session_state["layer"] = best
    return cfg, res, curve, best
