"""Load a study: DICOM files, a folder, a zip, or the built-in sample; then pick a series."""

from __future__ import annotations

import streamlit as st

from dashboard import loading, overlay_ui, state, streamlit_internals
from dashboard.frame import page_frame

page_frame("Load a study")

st.title("Hounsfield")
st.markdown(
    "Look inside CT and other DICOM studies in your browser: slices in three planes with true "
    "Hounsfield units, the tissue histogram, 3D surfaces, and what the files say about the patient. "
    "Files you upload stay in this browser session's memory only: nothing is written to disk or shared."
)

files, what = loading.upload_ui()
loading.refused_upload_ui()
buttons = st.container(horizontal=True)  # each button as wide as its words
if buttons.button("Load the built-in sample", key="load_sample", icon=":material/science:"):
    state.set_study(state.sample_study())
    st.session_state[state.LOAD_REPORT] = None
if buttons.button("Close the study", key="load_close", icon=":material/close:", disabled=state.study() is None):
    state.clear_study()
    st.session_state[state.LOAD_REPORT] = None

if files and loading.signature(files) != st.session_state[state.LOADED_SIGNATURE]:
    if loading.make_room(files):
        st.info("The open study was closed to make room in memory for the new upload.")
    result = loading.load_with_progress(files)
    st.session_state[state.LOADED_SIGNATURE] = loading.signature(files)
    if result.volumes:
        state.set_study(state.Study(volumes=result.volumes, skipped=result.skipped, source=what,
                                    segmentations=result.segmentations))
        st.session_state[state.LOAD_REPORT] = None
    else:
        st.session_state[state.LOAD_REPORT] = result.skipped + [  # a SEG alone has no images to lie on
            (name, "a segmentation (DICOM SEG) without its images: upload it with its series, or add it on the "
                   "Volume explorer for the current series") for name, _ in result.segmentations]
    # New, empty uploaders either way: a failed upload does not linger in them, and the loader has
    # released the files; forget any left in the replaced uploaders too.
    streamlit_internals.forget_stale_uploads()
    st.session_state[state.UPLOAD_NONCE] += 1
    st.session_state[state.LOADED_SIGNATURE] = None
    st.rerun()

report = st.session_state[state.LOAD_REPORT]
if report is not None:
    refusals = loading.memory_refusals(report)
    st.error(
        f"The upload could not be loaded: {refusals[0]}. The reasons are listed below." if refusals else
        "No image series could be assembled from the upload: none of the files is a DICOM image this app can "
        "read. The reasons are listed below; the previously loaded study is still open."
    )
    loading.skipped_ui(report, expanded=True)

study = state.study()
st.subheader("Series")
if study is None or not study.volumes:
    st.info("Nothing is loaded. Upload DICOM files above, or load the built-in sample.")
    st.stop()

n = len(study.volumes)
st.caption(f"{study.source}: {n} series found, largest first. Pick the one to explore.")
loading.show_series_table(study, show_phi=state.show_phi())
index = loading.pick_series_ui(study, show_phi=state.show_phi())
loading.next_step_ui(study.volumes[index])
loading.preview_ui(study.volumes[index])
loading.geometry_ui(study, index)
loading.memory_notice_ui(study.skipped)
overlay_ui.segmentations_ui(study)
loading.skipped_ui(study.skipped)
