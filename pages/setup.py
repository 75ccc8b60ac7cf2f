"""Setup: choose a model, a task and the options, then compute."""

import pandas as pd
import streamlit as st

from analysis.data.tasks import GLUE, MAX_UPLOAD_BYTES, OFFLINE, TaskConfig, load_task, parse_table
from analysis.errors import VariscopeError
from analysis.models.hidden_states import POOLINGS, REPRESENTATION_CHOICES
from analysis.models.registry import registry_status
from analysis.records import counts_text, registry_rows, task_summary
from analysis.settings import DEFAULT_TASK, MAX_BOOTSTRAP, MAX_KEEP, MIN_KEEP, check_upload, stream_settings
from analysis.stream.kept import kept_fields, total_texts
from pages._compute import get_states_ui
from pages._state import analysis_config, bound, ensure_app

ensure_app()

ss = st.session_state
st.title(":material/tune: Setup")
st.caption(
    "Pick a pretrained model and a labelled task. Variscope pools every layer's hidden states in one "
    "forward pass, caches them on disk, and computes the variability ratio ν per layer."
)


@st.cache_data(show_spinner=False)
def _registry():
    return registry_status()


@st.cache_data(show_spinner="Reading the task…", max_entries=16)
def _task_summary(cfg: TaskConfig, content: bytes | None):
    return task_summary(load_task(cfg, content))


@st.cache_data(show_spinner=False)
def _detected_device():
    from analysis.models.load import resolve_device

    return resolve_device("auto")


left, right = st.columns(2, gap="large")
with left:
    st.subheader("Model")
    reg = _registry()
    names = [r["name"] for r in reg]
    src = st.radio(
        "Source",
        ["Offline", "Folder or Hugging Face id"],
        horizontal=True,
        index=0 if ss["model"] in names else 1,
        key="model_source",
    )
    if src == "Offline":
        if ss["model"] not in names:
            ss["model"] = names[0]
            ss.pop("w_model", None)
        bound(
            st.selectbox,
            "Offline model",
            "model",
            options=names,
            format_func=lambda n: next(
                f"{r['title']}" + ("" if r["installed"] else " — not installed") for r in reg if r["name"] == n
            ),
        )
        st.dataframe(pd.DataFrame(registry_rows(reg)), hide_index=True, width="stretch")
    else:
        if ss["model"] in names:
            ss["model"] = ""
            ss.pop("w_model", None)
        bound(
            st.text_input,
            "Local folder or Hugging Face model id",
            "model",
            placeholder="e.g. ./my-model or roberta-base",
            help="Hub models need a connection (or the local Hugging Face cache).",
        )
        bound(
            st.checkbox,
            "Trust remote code (runs the model author's Python code)",
            "trust_remote_code",
            help="Off by default. Only for models you trust.",
        )

with right:
    st.subheader("Task")
    kinds = ["Offline", "GLUE", "Hugging Face dataset", "Upload a file"]
    default_kind = 3 if ss.get("upload") else 0 if ss["task"] in OFFLINE else 1 if ss["task"] in GLUE else 2
    kind = st.radio("Source", kinds, horizontal=True, index=default_kind, key="task_source")
    content = None
    if kind != "Upload a file":
        ss["upload"] = None
    if kind == "Offline":
        if ss["task"] not in OFFLINE:
            ss["task"] = DEFAULT_TASK
            ss.pop("w_task", None)
        bound(st.selectbox, "Offline task", "task", options=list(OFFLINE), format_func=lambda k: OFFLINE[k][1])
    elif kind == "GLUE":
        if ss["task"] not in GLUE:
            ss["task"] = "sst2"
            ss.pop("w_task", None)
        bound(
            st.selectbox,
            "GLUE task",
            "task",
            options=list(GLUE),
            help="Loaded with datasets.load_dataset('nyu-mll/glue', name); needs the hub or its cache.",
        )
    elif kind == "Hugging Face dataset":
        bound(st.text_input, "Dataset id", "task", placeholder="e.g. imdb")
        c1, c2, c3 = st.columns(3)
        bound(c1.text_input, "Text column", "text_col")
        bound(c2.text_input, "Label column", "label_col")
        bound(c3.text_input, "Pair column (optional)", "text_pair_col")
        bound(st.text_input, "Configuration (optional)", "hf_config")
    else:
        f = st.file_uploader(
            "CSV, TSV or JSONL with a text and a label column",
            type=["csv", "tsv", "jsonl", "json"],
            help=f"At most {MAX_UPLOAD_BYTES // 2**20} MB. Read in memory only.",
        )
        if f is not None:
            data = f.getvalue()
            try:
                check_upload(f.name, len(data))
                ss["upload"] = {"name": f.name, "bytes": data}
            except VariscopeError as e:
                st.error(str(e))
                ss["upload"] = None  # never fall back to an earlier file or task
        if ss.get("upload"):
            try:
                rows, _ = parse_table(ss["upload"]["bytes"], ss["upload"]["name"])
                cols = list(rows[0].keys())
                c1, c2, c3 = st.columns(3)
                for c, (lab, key, opt) in zip(
                    (c1, c2, c3),
                    (
                        ("Text column", "text_col", cols),
                        ("Label column", "label_col", cols),
                        ("Pair column", "text_pair_col", [None] + cols),
                    ),
                    strict=True,
                ):
                    if ss.get(key) not in opt:
                        ss[key] = opt[0] if key != "label_col" else opt[-1]
                        ss.pop("w_" + key, None)
                    bound(c.selectbox, lab, key, options=opt)
                content = ss["upload"]["bytes"]
            except VariscopeError as e:
                st.error(str(e))
                ss["upload"] = None
    if kind in ("Offline", "GLUE", "Hugging Face dataset"):
        bound(
            st.selectbox,
            "Split",
            "split",
            options=["train", "test"] if kind != "Hugging Face dataset" else ["train", "test", "validation"],
        )
    try:
        if kind != "Upload a file" or ss.get("upload"):
            cfg = analysis_config()
            if kind not in ("GLUE", "Hugging Face dataset"):  # the hub ones load on Compute
                summ = _task_summary(cfg.task, content)
                st.caption(f"{summ['n']} texts · classes: " + counts_text(summ["counts"]))
                for w in summ["warnings"]:
                    st.warning(w)
                with st.expander("Preview", expanded=kind == "Upload a file"):
                    st.dataframe(pd.DataFrame(summ["preview"]), hide_index=True, width="stretch")
    except VariscopeError as e:
        st.error(str(e))

st.subheader("Options")
o1, o2, o3, o4 = st.columns(4)
bound(
    o1.number_input,
    "Texts n (0 = all)",
    "n",
    min_value=0,
    step=100,
    help="Stratified sample of the split, deterministic from the seed.",
)
bound(o2.number_input, "Per-class cap (0 = none)", "per_class", min_value=0, step=50)
bound(o3.number_input, "Seed", "seed", min_value=0, step=1)
bound(o4.number_input, "Max length (tokens)", "max_length", min_value=1, max_value=8192, step=32)
o5, o6, o7, o8 = st.columns(4)
bound(
    o5.selectbox,
    "Pooling",
    "pooling",
    options=POOLINGS,
    help="mean: over real tokens (no padding, no special tokens), as in the paper.",
)
bound(
    o6.selectbox, "Device", "device", options=["auto", "cpu", "cuda", "mps"], help=f"auto picks: {_detected_device()}"
)
bound(
    o7.selectbox,
    "Dtype",
    "dtype",
    options=["auto", "float32", "bfloat16", "float16", "autocast-bfloat16"],
    help="auto: float32 on CPU; on a CUDA GPU float32 weights with a bfloat16 autocast forward pass. "
    "bfloat16 or float16 cast the weights themselves (half the memory). autocast-bfloat16: float32 weights, "
    "bfloat16 compute, for curves and training, on CPUs with native bfloat16 (results then depend on the machine).",
)
bound(o8.number_input, "Bootstrap resamples (band)", "bootstrap", min_value=0, max_value=MAX_BOOTSTRAP, step=50)
o9, _ = st.columns([1, 3])
bound(
    o9.selectbox,
    "States (decoders)",
    "representation",
    options=REPRESENTATION_CHOICES,
    help="raw: each layer's residual stream as the model returns it. final-norm: through the decoder's final norm, "
    "what a classifier on the model truncated at that layer pools. auto: final-norm on a pre-norm decoder, raw "
    "elsewhere. Encoders have no final norm: raw. docs/selectors.md says which agrees better with training.",
)
with st.expander("Large samples (streaming)"):
    st.caption(
        "Above this many texts the pages do not hold every text's states: ν is streamed, exact, from all of "
        "them, and the bootstrap band, projections and layer cards use a seeded sample."
    )
    x1, x2 = st.columns(2)
    bound(x1.number_input, "Stream above (texts)", "stream_above", min_value=1, step=1000)
    bound(x2.number_input, "Sample kept (texts)", "sample_keep", min_value=MIN_KEEP, max_value=MAX_KEEP, step=500)
    try:
        stream_settings(ss.get("stream_above"), ss.get("sample_keep"))
    except VariscopeError as e:
        st.error(str(e))

# after a rejected (or no) upload there is nothing to compute: never fall back to the previous task
blocked = "Upload a valid file first." if kind == "Upload a file" and not ss.get("upload") else None
if st.button("Compute", type="primary", key="compute", disabled=blocked is not None, help=blocked):
    result = get_states_ui() if blocked is None else None
    if blocked is not None:
        st.error(blocked)
    if result is not None:
        how = "loaded from the disk cache" if result.cache_hit else f"computed in {result.seconds['total']:.1f} s"
        K = kept_fields(result).get("sample_size")
        if K is not None:
            how = "loaded from the cache" if result.cache_hit else f"streamed in {result.seconds.get('total', 0):.1f} s"
            how += f" (ν of every text; the states of {K} kept)"
        shape = f"{total_texts(result)} texts × {result.n_layers + 1} layers × d={result.states.shape[2]}"
        st.success(f"{shape} — {how}.")
        for w in result.info.get("warnings", []):
            st.warning(w)
        ss["computed"] = True
if ss.get("computed"):
    st.page_link("pages/variability.py", label="See the variability curve", icon=":material/show_chart:")
