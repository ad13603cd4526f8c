"""3D isosurface: bone, skin, soft tissue, vessels or the segmented lungs, drawn in the browser."""

from __future__ import annotations

import streamlit as st

from dashboard import iso_ui, kinds
from dashboard.frame import page_frame

vol = page_frame("3D isosurface", needs_volume=True)

st.title("3D isosurface")
kinds.needs(vol, what="A 3D surface")
iso_ui.init(vol)
view, side = st.columns([3, 1], gap="medium")
with side:
    settings = iso_ui.settings_ui(vol)
with view:
    if vol.shape[0] < 2:
        st.info("This series is a single slice: there is no volume to build a surface from.")
        st.stop()
    if not vol.is_regular:
        st.warning("This stack is sheared or unevenly spaced: the surface follows the true slice positions. "
                   "Turn on **Use corrected geometry** on *Load a study* for exact distances between slices.")
    if not iso_ui.show_on_arrival(vol) and not st.toggle(
            "Show the 3D surface", key=iso_ui.SHOW, persist_state="session", help="Large series take a few seconds."):
        st.stop()
    built = iso_ui.surface_ui(vol, settings)
    if built is None:
        st.stop()
    mesh, lungs = built
    iso_ui.chart_ui(vol, mesh, settings.preset)
with side:
    iso_ui.facts_ui(vol, mesh, lungs, settings)
    iso_ui.downloads_ui(mesh, settings)
