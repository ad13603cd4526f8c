"""Uploads are not copied per run and leave no stored bytes behind (real Streamlit runtime via AppTest)."""

from __future__ import annotations

import copy

from streamlit.testing.v1 import AppTest

SCRIPT = """
import copy
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFileRec

from dashboard.streamlit_internals import forget_stale_uploads, share_upload_bytes, upload_instances

share_upload_bytes()
photo = st.file_uploader("A photo", key="faces_photo")
files = st.file_uploader("DICOM files", key="load_files_0", accept_multiple_files=True)
ctx = get_script_run_ctx()
store = ctx.uploaded_file_mgr
if photo is not None and files:
    # What st.file_uploader handed back shares the stored bytes: no copy per run.
    ids = [photo.file_id, files[0].file_id]
    stored = {r.file_id: r.data for r in store.get_files(session_id=ctx.session_id, file_ids=ids)}
    photo_shared = photo.getvalue() is stored[photo.file_id]
    st.session_state["shared"] = photo_shared and files[0].getvalue() is stored[files[0].file_id]
    st.session_state["instances"] = len(upload_instances()[files[0].file_id])
    # A file stored for an uploader that was replaced while it arrived: no widget refers to it.
    store.add_file(ctx.session_id, UploadedFileRec("orphan-1", "late.dcm", "application/dicom", b"x" * 10))
    st.session_state["removed"] = forget_stale_uploads()
    left = {r.file_id for r in store.get_files(session_id=ctx.session_id, file_ids=[*ids, "orphan-1"])}
    st.session_state["photo_kept"] = photo.file_id in left
    st.session_state["orphan_left"] = "orphan-1" in left
    st.session_state["loaded_left"] = files[0].file_id in left
"""


def _app() -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=30)
    at.run()
    at.file_uploader(key="faces_photo").set_value(("face.png", b"\\x89PNG" + bytes(100), "image/png"))
    at.file_uploader(key="load_files_0").set_value([("a.dcm", bytes(2000), "application/dicom")])
    at.run()
    assert not at.exception
    return at


def test_uploaded_files_handed_to_a_run_share_the_stored_bytes():
    at = _app()
    assert at.session_state["shared"] is True
    assert at.session_state["instances"] >= 1


def test_stale_uploads_are_forgotten_and_other_widgets_files_kept():
    at = _app()
    assert at.session_state["orphan_left"] is False
    assert at.session_state["photo_kept"] is True  # another page's uploader keeps its file
    assert at.session_state["loaded_left"] is False  # the load uploader's files go with it
    assert at.session_state["removed"] == 2


def test_copies_share_bytes_and_stay_independent():
    from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

    from dashboard.streamlit_internals import share_upload_bytes

    share_upload_bytes()
    data = bytes(range(256)) * 100
    original = UploadedFile(UploadedFileRec("id1", "a.dcm", "application/dicom", data), None)
    original.seek(10)
    dup = copy.deepcopy([original])[0]
    assert dup is not original and dup.getvalue() is data  # shared, not copied
    assert (dup.file_id, dup.name, dup.size, dup.tell()) == ("id1", "a.dcm", len(data), 10)
    dup.read(5)
    dup.write(b"zz")  # copy-on-write: the original and the stored bytes do not change
    assert original.tell() == 10 and original.getvalue() == data and data[15:17] == bytes([15, 16])
    original.close()
    assert copy.deepcopy(original) is original  # a closed file has nothing to share
