"""Shared state and helpers for the Streamlit pages (UI only; numerics live in analysis/)."""

from __future__ import annotations

import time
from dataclasses import replace

import streamlit as st

from analysis.errors import VariscopeError
from analysis.stream.curve import DEFAULT_KEEP
from analysis.stream.kept import KEEP_MAX, STREAM_ABOVE

# settings shared by all pages and mirrored in the URL
URL_KEYS = {"model": str, "task": str, "n": int, "seed": int, "pooling": str, "max_length": int, "layer": int}
DEFAULTS = {
    "model": "minilm",
    "task": "rotten_tomatoes",
    "n": 1000,
    "seed": 0,
    "pooling": "mean",
    "max_length": 128,
    "layer": None,
    "per_class": None,
    "device": "auto",
    "dtype": "auto",
    "bootstrap": 0,
    "text_col": "text",
    "text_pair_col": None,
    "label_col": "label",
    "split": "train",
    "upload": None,
    "trust_remote_code": False,
    "hf_config": None,
    "bins": None,
    "rule": "argmin",
    "tolerance": 10.0,
    "comparisons": [],
    # not in the URL: above this many texts the pages stream (exact ν) and hold the states of a sample
    "stream_above": STREAM_ABOVE,
    "sample_keep": DEFAULT_KEEP,
}


def ensure_app() -> None:
    """Make every page run through app.py's ``st.navigation``.

    With a ``pages/`` folder beside app.py, Streamlit's first run in a fresh
    server process uses the old folder-driven navigation: a page opened by URL
    runs without app.py (no shared state) and the sidebar lists every file,
    including a stray "app" entry. Each page calls this first; in that one
    run it switches Streamlit to app.py's navigation and reruns the same URL.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


#: Environment variable with which the person running the server lets URLs name local folders and files.
ALLOW_LOCAL_ENV = "VARISCOPE_ALLOW_LOCAL_PATHS"


def local_paths_allowed() -> bool:
    """True when the server's operator opted in to local paths from URLs (``VARISCOPE_ALLOW_LOCAL_PATHS=1``)."""
    import os

    return os.environ.get(ALLOW_LOCAL_ENV, "").strip().lower() in ("1", "true", "yes")


def names_local_path(key: str, value: str) -> bool:
    """Whether a model or task value would make the server read its own disk (a folder or file there).

    Offline and GLUE names never do; anything else that exists on disk, or
    starts like a path (``.``, ``/``, ``~``), is read as a local path by the
    model and task resolvers.
    """
    from pathlib import Path

    from analysis.data.tasks import GLUE, OFFLINE
    from analysis.models.registry import REGISTRY

    if key not in ("model", "task") or value in REGISTRY or value in OFFLINE or value in GLUE:
        return False
    try:
        return value.strip().startswith((".", "/", "~", "\\")) or Path(value.strip()).expanduser().exists()
    except (OSError, ValueError):  # e.g. an embedded NUL: never a name we read
        return True


def _read_url(ss) -> None:
    """The shared settings from the URL; a local path in model/task only with the operator's opt-in."""
    for k, typ in URL_KEYS.items():
        if k not in st.query_params:
            continue
        raw = st.query_params[k]
        if typ is str and names_local_path(k, raw) and not local_paths_allowed():
            st.error(
                f"Ignored the link's {k}={raw[:80]!r}: local folders and files cannot be opened from a URL "
                f"on this server (its operator can allow it with {ALLOW_LOCAL_ENV}=1). "
                "Enter it on the Setup page instead."
            )
            continue
        try:
            ss[k] = typ(raw)
        except ValueError:
            st.toast(f"ignored URL parameter {k}={raw!r}")
        ss.pop("w_" + k, None)


def init_state() -> None:
    """Defaults, then the URL's values (once per browser session)."""
    ss = st.session_state
    for k, v in DEFAULTS.items():
        if k not in ss:
            ss[k] = list(v) if isinstance(v, list) else v
    if not ss.get("_url_read"):
        ss["_url_read"] = True
        _read_url(ss)


def sync_url() -> None:
    """Write the shared settings into the URL so that a link reproduces the view."""
    ss = st.session_state
    want = {k: str(ss[k]) for k in URL_KEYS if ss.get(k) is not None}
    if ss.get("upload"):
        want.pop("task", None)
    if dict(st.query_params) != want:
        st.query_params.from_dict(want)


def bound(widget, label, key, **kw):
    """A widget whose value lives under ``key`` and survives page switches.

    The widget's own key ("w_" + key) is refreshed from ``key`` before each
    render, and an on_change callback copies user edits back, so the value is
    shared by the same control on several pages and by the URL.
    """
    wkey = "w_" + key
    st.session_state[wkey] = st.session_state.get(key)
    return widget(label, key=wkey, on_change=_copy_back, args=(wkey, key), **kw)


def _copy_back(wkey: str, key: str) -> None:
    st.session_state[key] = st.session_state[wkey]


def analysis_config():
    """AnalysisConfig from the session's settings (the same settings layer as the CLI)."""
    from analysis.settings import DEFAULTS, from_settings

    ss = st.session_state
    up = ss.get("upload")
    settings = {k: ss[k] for k in DEFAULTS if k in ss}
    settings.update(task=None if up else ss["task"], data=up["name"] if up else None)
    return from_settings(settings)


def upload_bytes():
    up = st.session_state.get("upload")
    return up["bytes"] if up else None


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _load_model(
    source: str, name: str, location: str, fingerprint: str, revision, device: str, dtype: str, trust: bool
):
    from analysis.models.load import ModelRef, load_model

    return load_model(
        ModelRef(name, source, location, fingerprint, revision), device=device, dtype=dtype, trust_remote_code=trust
    )


def model_loader(ref, device, dtype, trust):
    """Loader for analysis.get_states, cached across reruns and sessions (keys are primitives)."""
    return _load_model(ref.source, ref.name, ref.location, ref.fingerprint, ref.revision, device, dtype, bool(trust))


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
    """(threshold, sample size K) of the session, clipped to what the Setup page offers."""
    ss = st.session_state
    try:
        above, keep = int(ss.get("stream_above") or STREAM_ABOVE), int(ss.get("sample_keep") or DEFAULT_KEEP)
    except (TypeError, ValueError):
        above, keep = STREAM_ABOVE, DEFAULT_KEEP
    return max(1, above), min(max(10, keep), KEEP_MAX)


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
    with st.spinner("Preparing…"):
        return get_states(cfg, content=content, progress=texts_progress(bar, label), loader=model_loader)


def get_states_ui(cfg=None, *, label="Computing hidden states"):
    """States for the current settings with a live progress bar; None after an error.

    Above the session's ``stream_above`` texts: a :class:`~analysis.stream.kept.KeptStates`
    (ν of every text, the states of a seeded sample of ``sample_keep``).
    """
    cfg = cfg or analysis_config()
    bar = st.empty()
    try:
        prepare_model_ui(cfg.model)
        st_ = _states_or_sample(cfg, bar, label)
    except VariscopeError as e:
        bar.empty()
        st.error(str(e))
        return None
    except Exception as e:  # an unexpected failure: one line on the page, the details in the server log
        import traceback

        traceback.print_exc()
        bar.empty()
        st.error(f"unexpected error ({type(e).__name__}): {str(e).splitlines()[0][:300] if str(e) else ''}")
        return None
    bar.empty()
    return st_


@st.cache_data(show_spinner="Computing ν per layer…", max_entries=32)
def curve_for(key: str, bootstrap: int, weighting: str, seed: int, _res):
    """ν per layer of the states under ``key`` (exact ν and a sample's band for a streamed result)."""
    from analysis.stream.kept import curve_of

    return curve_of(_res, bootstrap=bootstrap, weighting=weighting, seed=seed).to_dict()


def selected_layer(n_layers: int) -> int:
    """The shared selected layer, clipped to 0..n_layers (default: the recommendation)."""
    layer = st.session_state.get("layer")
    if layer is None or not 0 <= int(layer) <= n_layers:
        return None
    return int(layer)


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


def session_alive_probe():
    """A function telling whether this browser session is still connected (background runs stop when not)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    sid = get_script_run_ctx().session_id
    rt = Runtime.instance()
    return lambda: rt.is_active_session(sid)
