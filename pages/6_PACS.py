"""PACS: search an archive over DICOMweb (QIDO-RS, WADO-RS) or DIMSE (C-FIND, C-GET, C-MOVE) and bring a series here."""

from __future__ import annotations

import streamlit as st

from dashboard import dimse_ui, pacs_ui, state
from dashboard.frame import page_frame

page_frame("PACS")
DICOMWEB, DIMSE = "DICOMweb", "DIMSE (DICOM network)"

st.title("PACS")
st.markdown("Search an archive and bring a series here, in memory, without exporting files: over DICOMweb, or over "
            "DIMSE as hospital archives and DICOM nodes speak it.")
settings = pacs_ui.settings_or_stop()
dimse = dimse_ui.settings_or_none()
kind = st.radio("Connection", [DICOMWEB, DIMSE] if dimse else [DICOMWEB], key="pacs_kind", persist_state="session",
                horizontal=True,
                label_visibility="collapsed") if dimse else DICOMWEB
pacs_ui.done_ui()
if kind == DIMSE and dimse is not None:  # only the chosen kind is drawn (and runs)
    dimse_ui.init()
    peer = dimse_ui.connection_ui(settings, dimse)
    dimse_ui.echo_ui(peer)
    dimse_ui.search_ui(peer, dimse)
    dimse_ui.results_ui(peer, dimse, show_phi=state.show_phi())
    st.subheader("Send (C-STORE)")
    dimse_ui.send_ui(peer)
else:
    pacs_ui.init(settings)
    conn = pacs_ui.connection_ui(settings)
    pacs_ui.search_ui(conn)
    pacs_ui.results_ui(conn, show_phi=state.show_phi())
