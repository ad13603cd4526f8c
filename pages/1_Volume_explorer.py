"""Volume explorer: linked axial, coronal and sagittal views with window/level, slabs, measurements and overlays."""

from __future__ import annotations

import streamlit as st

from dashboard import explorer, image_view
from dashboard.frame import page_frame

vol = page_frame("Volume explorer", needs_volume=True)

st.title("Volume explorer")
if vol.kind != "volume":  # loops, projections, galleries: one large view (issue 19)
    image_view.page_ui(vol)
    st.stop()
explorer.init(vol)
explorer.warnings_ui(vol)
explorer.viewer(vol)
explorer.measurement_downloads_ui(vol)
explorer.png_download_ui(vol)
explorer.downloads_ui(vol)
