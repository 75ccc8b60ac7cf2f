"""The pages' shared state: URL keys, defaults, init and sync, bound widgets, the local-path opt-in.

Every default comes from :mod:`analysis.settings`; this module only says which settings the
pages share and which of them a link carries.
"""

from __future__ import annotations

import streamlit as st

from analysis.settings import CURVE_DEFAULTS, DEFAULT_BOOTSTRAP, DEFAULT_KEEP, DEFAULT_TASK, STREAM_ABOVE
from analysis.settings import DEFAULTS as SETTINGS

#: Settings shared by all pages and mirrored in the URL.
URL_KEYS = {"model": str, "task": str, "n": int, "seed": int, "pooling": str, "max_length": int, "layer": int}
URL_KEYS |= {"representation": str}
_SHARED = ("model", "n", "seed", "pooling", "max_length", "per_class", "device", "dtype", "text_col", "representation")
_SHARED += ("text_pair_col", "label_col", "split", "trust_remote_code", "hf_config", "bins")
DEFAULTS = {
    **{k: SETTINGS[k] for k in _SHARED},
    "task": DEFAULT_TASK,
    **{k: CURVE_DEFAULTS[k] for k in ("rule", "tolerance")},
    "bootstrap": DEFAULT_BOOTSTRAP,
    "layer": None,  # None: the recommended layer
    "upload": None,
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

    Offline and GLUE names never do; anything else follows the model resolver's path rule
    (:func:`analysis.models.load.is_local_path`), which also covers a task's dataset folder.
    """
    from analysis.data.tasks import GLUE, OFFLINE
    from analysis.models.load import is_local_path
    from analysis.models.registry import REGISTRY

    if key not in ("model", "task") or value in REGISTRY or value in OFFLINE or value in GLUE:
        return False
    return is_local_path(value)


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
    from analysis.settings import from_settings

    ss = st.session_state
    up = ss.get("upload")
    settings = {k: ss[k] for k in SETTINGS if k in ss}
    settings.update(task=None if up else ss["task"], data=up["name"] if up else None)
    return from_settings(settings)


def upload_bytes():
    up = st.session_state.get("upload")
    return up["bytes"] if up else None


def session_alive_probe():
    """A function telling whether this browser session is still connected (background runs stop when not)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    sid = get_script_run_ctx().session_id
    rt = Runtime.instance()
    return lambda: rt.is_active_session(sid)


def states_label() -> str:
    """The sidebar's States: the session's representation, with what "auto" resolves to for its model when that
    is cheap to tell (a model whose config cannot be read, or that runs remote code, keeps plain "auto")."""
    from analysis.models.load import default_cache_dir
    from analysis.models.registry import needs_preparation

    ss = st.session_state
    rep = ss["representation"]
    if rep != "auto" or ss.get("trust_remote_code") or needs_preparation(ss["model"], default_cache_dir()):
        return rep  # never build remote code, nor start an offline model's minutes-long conversion, for a label
    found = _auto_resolves_to(ss["model"], ss.get("revision"))
    return rep if found is None else f"auto → {found}"


@st.cache_data(show_spinner=False, max_entries=64)
def _auto_resolves_to(model: str, revision: str | None) -> str | None:
    """What "auto" is for ``model`` (None: its config cannot be read here); cached, failures too, so a typo'd or
    unreachable hub id costs one probe, not one per rerun."""
    from analysis.errors import VariscopeError
    from analysis.pipeline import AnalysisConfig, concrete

    try:
        return concrete(AnalysisConfig(model=model, revision=revision, representation="auto")).representation
    except VariscopeError:
        return None
