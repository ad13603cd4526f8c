"""3D isosurface: bone, skin, soft tissue, vessels or the segmented lungs as a Plotly mesh."""

from __future__ import annotations

import streamlit as st

from dashboard import iso_ui, state
from dashboard.frame import page_frame

vol = page_frame("3D isosurface", needs_volume=True)

st.title("3D isosurface")
st.caption("Marching cubes at a threshold, in millimetres, within a triangle budget. Built when you ask for it.")
iso_ui.init(vol)
settings = iso_ui.settings_ui(vol)
if vol.shape[0] < 2:
    st.info("This series is a single slice: there is no volume to build a surface from.")
    st.stop()
if not vol.is_regular:
    st.warning("This stack is sheared or unevenly spaced: the surface follows the true slice positions, but turn on "
               "**Use corrected geometry** on *Load a study* for exact distances between slices.")
if not st.toggle("Show the 3D surface", key=iso_ui.SHOW):
    st.stop()

lungs = None
try:
    with st.spinner("Building the surface…"):
        if settings.preset == iso_ui.LUNGS:
            _, lungs = iso_ui.lungs_for(vol, state.volume_key(vol))
        mesh = iso_ui.mesh_for(vol, state.volume_key(vol), settings)
except ValueError as exc:
    st.error(f"No surface: {exc}. Choose another threshold or surface.")
    st.stop()
iso_ui.facts_ui(mesh, lungs)
st.plotly_chart(iso_ui.figure(mesh, iso_ui.COLORS.get(settings.preset, "#c8c8c8")), key="iso_chart",
                width="stretch")
iso_ui.downloads_ui(mesh, settings)
