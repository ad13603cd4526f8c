"""PACS: search a DICOMweb server (QIDO-RS) and retrieve a series (WADO-RS) into this session."""

from __future__ import annotations

import streamlit as st

from dashboard import pacs_ui, state
from dashboard.frame import page_frame

page_frame("PACS (DICOMweb)")

st.title("PACS (DICOMweb)")
st.markdown("Search an archive that speaks DICOMweb and bring a series here, in memory, without exporting files.")
settings = pacs_ui.settings_or_stop()
pacs_ui.init(settings)
pacs_ui.done_ui()
conn = pacs_ui.connection_ui(settings)
pacs_ui.search_ui(conn)
pacs_ui.results_ui(conn, show_phi=state.show_phi())
