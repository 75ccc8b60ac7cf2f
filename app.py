"""Variscope — navigation and the shared sidebar. Page logic lives in pages/, numerics in analysis/."""

import streamlit as st

from pages._state import init_state, states_label, sync_url

st.set_page_config(page_title="Variscope", page_icon=":material/biotech:", layout="wide")
init_state()

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/setup.py", title="Setup", icon=":material/tune:", url_path="setup"),
    st.Page("pages/variability.py", title="Variability", icon=":material/show_chart:", url_path="variability"),
    st.Page("pages/layers.py", title="Layers", icon=":material/view_module:", url_path="layers"),
    st.Page("pages/projections.py", title="Projections", icon=":material/scatter_plot:", url_path="projections"),
    st.Page("pages/training.py", title="Training", icon=":material/model_training:", url_path="training"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
]
page = st.navigation(PAGES)

sync_url()
page.run()
ss = st.session_state
with st.sidebar:
    st.markdown("### :material/biotech: Variscope")
    st.caption("Which layers already separate your classes — and which few to tune.")
    task = ss["upload"]["name"] if ss.get("upload") else ss["task"]
    layer = "recommended" if ss.get("layer") is None else ss["layer"]
    st.markdown(
        f"**Model** `{ss['model']}`  \n**Task** `{task}`  \n**n** {ss['n'] or 'all'} · "
        f"**seed** {ss['seed']}  \n**Pooling** {ss['pooling']} · **max length** {ss['max_length']}  \n"
        f"**States** {states_label()}  \n"
        f"**Selected layer** {layer}"
    )

sync_url()
