"""Face detection: OpenCV's Haar cascades on photos, anonymisation, and a privacy check of head CT."""

from __future__ import annotations

import streamlit as st

from dashboard import faces_ui, kinds
from dashboard.frame import page_frame

vol = page_frame("Face detection")

st.title("Face detection")
st.markdown(
    "Finds faces in photos with OpenCV's face detectors, so that they can be hidden before sharing. "
    "Renderings of a head CT can show a recognisable face too: the check at the bottom looks for one."
)
faces_ui.init()
image, key = faces_ui.source_ui()
if image is not None:
    settings = faces_ui.settings_ui()
    boxes = faces_ui.detect_ui(image, key, settings)
    st.subheader("Anonymise")
    faces_ui.anonymise_ui(image, boxes, key)
st.subheader("Privacy check of a head CT")
kinds.needs(vol, what="The privacy check of CT")
faces_ui.ct_check_ui(vol)
