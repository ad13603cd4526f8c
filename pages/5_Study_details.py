"""Study details and privacy: every tag of the series, PHI hidden by default, de-identified export."""

from __future__ import annotations

import streamlit as st

from dashboard import details_ui, state
from dashboard.frame import page_frame

vol = page_frame("Study details and privacy", needs_volume=True)

st.title("Study details and privacy")
st.markdown(
    "DICOM files carry patient information beside the pixels. It stays hidden here unless you reveal it "
    "in the sidebar, and the export below removes it following DICOM PS3.15's Basic Application Level "
    "Confidentiality Profile."
)
details_ui.init(vol)
st.subheader("Tags")
details_ui.tag_browser_ui(vol, show_phi=state.show_phi())
st.subheader("De-identified export")
details_ui.export_ui(vol)
st.subheader("Summary")
details_ui.summary_ui(vol)
