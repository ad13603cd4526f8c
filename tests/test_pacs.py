"""Query and retrieve against a real Orthanc server (DICOMweb plugin) on loopback."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from core import load_series
from core.outbound import AddressPolicy
from core.pacs import PacsConnection, PacsError, PacsLimits, retrieve_series, search_series, search_studies
from tests.factory import ct_series, ramp_volume
from tests.orthanc import PASSWORD, USER

HU = ramp_volume((6, 32, 24), seed=7)
# Orthanc listens on loopback: these tests allow it explicitly, as a local user would.
LOCAL = AddressPolicy(allow_private=True)


@pytest.fixture(scope="module")
def pacs(orthanc):
    orthanc.clear()
    orthanc.store(ct_series(HU, series_uid="1.2.826.0.1.7.1", patient_name="PACS^ALICE",
                            extra={"StudyDate": "20240201", "AccessionNumber": "ACC-1",
                                   "StudyInstanceUID": "1.2.826.0.1.7"}))
    orthanc.store(ct_series(ramp_volume((3, 8, 8), seed=8), series_uid="1.2.826.0.2.7.1", patient_name="OTHER^BOB",
                            modality="MR", intercept=0.0,
                            extra={"StudyDate": "20230505", "AccessionNumber": "ACC-2",
                                   "StudyInstanceUID": "1.2.826.0.2.7"}))
    return orthanc


def _conn(server, **kw):
    return PacsConnection(server.dicomweb, username=USER, password=PASSWORD, policy=LOCAL, configured=True, **kw)


def _configured(url, **kw):
    """The operator's own PACS: messages say exactly what went wrong."""
    return PacsConnection(url, policy=LOCAL, configured=True, **kw)


class TestSearch:
    def test_by_name_prefix(self, pacs):
        rows = search_studies(_conn(pacs), patient_name="PACS")
        assert [r["PatientName"] for r in rows] == ["PACS^ALICE"]
        assert rows[0]["NumberOfStudyRelatedInstances"] == 6

    @pytest.mark.parametrize("kw,expected", [
        (dict(patient_id="ID-0001"), {"PACS^ALICE", "OTHER^BOB"}),
        (dict(date_from="20240101", date_to="20241231"), {"PACS^ALICE"}),
        (dict(modality="MR"), {"OTHER^BOB"}),
        (dict(accession="ACC-2"), {"OTHER^BOB"}),
        (dict(patient_name="NOBODY"), set()),
    ])
    def test_filters(self, pacs, kw, expected):
        assert {r["PatientName"] for r in search_studies(_conn(pacs), **kw)} == expected

    def test_series_of_a_study(self, pacs):
        series = search_series(_conn(pacs), "1.2.826.0.1.7")
        assert [(s["Modality"], s["NumberOfSeriesRelatedInstances"]) for s in series] == [("CT", 6)]


class TestRetrieve:
    def test_voxels_equal_the_stored_ones(self, pacs):
        calls = []
        files = retrieve_series(_conn(pacs), "1.2.826.0.1.7", "1.2.826.0.1.7.1",
                                progress=lambda d, t: calls.append((d, t)))
        assert len(files) == 6 and calls[0] == (0, 6) and calls[-1] == (6, 6)
        vol = load_series(files).volumes[0]
        np.testing.assert_array_equal(vol.voxels, HU)
        assert vol.series_uid == "1.2.826.0.1.7.1"


class TestErrors:
    def test_wrong_credentials(self, pacs):
        with pytest.raises(PacsError, match=r"refused the credentials \(HTTP 401\)"):
            search_studies(_configured(pacs.dicomweb, username=USER, password="wrong"))

    def test_wrong_path(self, pacs):
        with pytest.raises(PacsError, match=r"No DICOMweb service at .*/nope \(HTTP 404\)"):
            search_studies(_configured(pacs.root + "/nope", username=USER, password=PASSWORD))

    def test_server_down(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        with pytest.raises(PacsError, match="Could not connect to .*: check that the server is running"):
            search_studies(_configured(f"http://127.0.0.1:{port}/dicom-web"))

    def test_timeout(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection in the kernel, never answers
        try:
            port = listener.getsockname()[1]
            with pytest.raises(PacsError, match="did not answer within 1 s"):
                search_studies(_configured(f"http://127.0.0.1:{port}/dicom-web", limits=PacsLimits(search_seconds=1.0)))
        finally:
            listener.close()

    def test_not_dicomweb(self):
        class Html(BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<html><body>hello</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Html)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with pytest.raises(PacsError, match="not DICOMweb"):
                search_studies(_configured(f"http://127.0.0.1:{server.server_port}/dicom-web"))
        finally:
            server.shutdown()

    def test_bad_scheme(self):
        with pytest.raises(PacsError, match="must start with http"):
            search_studies(PacsConnection("pacs.example.org/dicom-web"))

    def test_secrets_are_not_in_the_repr(self):
        assert "s3cret" not in repr(PacsConnection("http://x", username="u", password="s3cret", token="s3cret"))


class TestPage:
    PAGE = Path(__file__).resolve().parents[1] / "pages" / "6_PACS.py"

    def test_search_and_retrieve_through_the_page(self, pacs, monkeypatch):
        from tests.helpers import page_test
        from tests.helpers import page_text as _page_text

        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")  # Orthanc is on loopback
        at = page_test(self.PAGE).run()
        at.text_input(key="pacs_url").set_value(pacs.dicomweb).run()
        at.radio(key="pacs_auth").set_value("User and password").run()
        at.text_input(key="pacs_user").set_value(USER).run()
        at.text_input(key="pacs_password").set_value(PASSWORD).run()
        at.text_input(key="pacs_name").set_value("PACS")
        at.button(key="FormSubmitter:pacs_search-Search studies").click().run()
        assert not at.exception
        assert any("1 study found" in m.value for m in at.markdown)
        assert "PACS^ALICE" not in _page_text(at)  # PHI hidden in the results by default
        at.button(key="pacs_retrieve").click().run()
        assert not at.exception
        assert any("Retrieved 6 images" in s.value for s in at.success)
        np.testing.assert_array_equal(at.session_state["study"].volumes[0].voxels, HU)

    def test_the_configured_pacs_with_its_stored_credentials(self, pacs, monkeypatch):
        from tests.helpers import page_test

        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        at = page_test(self.PAGE)
        at.secrets["pacs"] = {"url": pacs.dicomweb, "username": USER, "password": PASSWORD}
        at.run()
        assert at.text_input(key="pacs_url").value == pacs.dicomweb
        at.text_input(key="pacs_name").set_value("PACS")
        at.button(key="FormSubmitter:pacs_search-Search studies").click().run()
        assert not at.exception and not at.error
        assert any("1 study found" in m.value for m in at.markdown)

    def test_errors_of_the_configured_pacs_say_what_to_check(self, pacs, monkeypatch):
        from tests.helpers import page_test

        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        at = page_test(self.PAGE)
        at.secrets["pacs"] = {"url": pacs.dicomweb, "username": USER, "password": "wrong"}
        at.run()
        at.button(key="FormSubmitter:pacs_search-Search studies").click().run()
        assert not at.exception
        assert at.error and "HTTP 401" in at.error[0].value

    def test_errors_of_a_typed_address_do_not_tell_why(self, pacs, monkeypatch):
        from tests.helpers import page_test

        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        at = page_test(self.PAGE).run()
        at.text_input(key="pacs_url").set_value(pacs.dicomweb).run()
        at.button(key="FormSubmitter:pacs_search-Search studies").click().run()
        assert not at.exception
        assert at.error and at.error[0].value.startswith("Could not reach or use a DICOMweb service at")
        assert "401" not in at.error[0].value


def _load_retrieved_script():
    """An app that hands retrieved files to the PACS page's loader once (DIMSE uses the same one)."""
    import streamlit as st

    from core.pacs import RetrievedSeries
    from dashboard import pacs_ui

    if not st.session_state.get("test_loaded"):
        st.session_state["test_loaded"] = True
        files = RetrievedSeries()
        files.extend(st.session_state["test_files"])
        pacs_ui.load_retrieved(files, st.empty(), source="PACS (test)", how="")


def test_retrieved_files_keep_their_dicom_seg():
    """A DICOM SEG among the retrieved files stays with the study, as it does for an upload."""
    import dataclasses

    from core.loader import LoadResult
    from tests import factory

    if "segmentations" not in {f.name for f in dataclasses.fields(LoadResult)}:
        pytest.skip("the loader keeps no DICOM SEG files yet (branch wt-seg)")
    from streamlit.testing.v1 import AppTest

    files = factory.segmentable_series(ramp_volume((4, 16, 16), seed=3), spacing=(2.0, 1.0, 1.0))
    mask = np.zeros((4, 16, 16), np.uint8)
    mask[1:3, 4:9, 5:12] = 1
    seg = factory.segmentation_file(files, mask, {1: "Lesion"})
    at = AppTest.from_function(_load_retrieved_script, default_timeout=60)
    at.session_state["test_files"] = [*files, ("seg.dcm", seg)]
    at.run()
    assert not at.exception
    study = at.session_state["study"]
    assert study.source == "PACS (test)" and study.volumes[0].shape == (4, 16, 16)
    assert [data for _, data in study.segmentations] == [seg]
