"""3D isosurface: bone, skin, soft tissue, vessels or the segmented lungs as a Plotly mesh."""

from __future__ import annotations

import streamlit as st

from dashboard import iso_ui, kinds
from dashboard.frame import page_frame

vol = page_frame("3D isosurface", needs_volume=True)

st.title("3D isosurface")
kinds.needs(vol, what="A 3D surface")
st.caption("Marching cubes at a threshold, in millimetres, within a triangle budget. Built when you ask for it.")
iso_ui.init(vol)
settings = iso_ui.settings_ui(vol)
if vol.shape[0] < 2:
    st.info("This series is a single slice: there is no volume to build a surface from.")
    st.stop()
if not vol.is_regular:
    st.warning("This stack is sheared or unevenly spaced: the surface follows the true slice positions, but turn on "
               "**Use corrected geometry** on *Load a study* for exact distances between slices.")
if not st.toggle("Show the 3D surface", key=iso_ui.SHOW, persist_state="session"):
    st.stop()

built = iso_ui.surface_ui(vol, settings)
if built is None:
    st.stop()
mesh, lungs = built
iso_ui.facts_ui(mesh, lungs)
iso_ui.chart_ui(mesh, settings.preset)
iso_ui.downloads_ui(mesh, settings)
