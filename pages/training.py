"""Training: placeholder replaced below."""
import streamlit as st
from pages._common import ensure_app

ensure_app()

st.title("🏋️ Training")
